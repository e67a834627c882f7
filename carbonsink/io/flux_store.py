"""carbonsink's own published products as one more bottom-up product of a comparison (SCIENCE.md §8).

A manifest entry with ``store`` (a carbonsink store path or URL; relative to the manifest) and
``product`` (its published name, e.g. ``nep``, ``sink`` or ``observed_nep``; ``version`` default
``latest``) instead of ``files``:

    - {name: carbonsink_nep, kind: bottom_up, store: ../carbonsink-demo, product: nep,
       variable: nep}

These products are **annual** (g C m⁻² a⁻¹ per year). They enter the comparison's monthly series as
one twelfth of each year in every month, flagged ``temporal_resolution: annual``, so their annual
and period totals are exact and comparable, while the seasonal cycle, the latitude × month zonal
means and the ILAMB metrics (which need months) leave them out. Regridding is the same exact
conservative regridding as for files; the product must cover the study area and the years.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from .. import units as u
from ..grid import grid_of
from ..kernels import compare as k
from .flux_manifest import FluxInputError, FluxManifest, ProductSpec, sign_factor

ANNUAL = "annual"


def _open(spec: ProductSpec, m: FluxManifest) -> tuple[xr.DataArray, str]:
    from .store import Store, StoreError

    root = m.resolve(spec.store) if "://" not in spec.store else spec.store
    try:
        store = Store(root)
        version = store.resolve("products", spec.product, spec.version)
        ds = store.open("products", spec.product, version)
    except (StoreError, OSError, ValueError) as e:
        raise FluxInputError(spec.name, f"{root} products/{spec.product}",
                             f"cannot open the carbonsink product: {e}") from None
    where = f"{root} products/{spec.product}@{version}"
    if spec.variable not in ds:
        raise FluxInputError(spec.name, where, f"has no variable {spec.variable!r} (it has "
                             f"{sorted(ds.data_vars)})")
    da = ds[spec.variable]
    if tuple(da.dims) != ("year", "lat", "lon"):
        raise FluxInputError(spec.name, where, f"{spec.variable} has dims {da.dims}, expected "
                             "(year, lat, lon): an annual carbonsink product")
    return da, where


def read_store_product(spec: ProductSpec, m: FluxManifest, grid, inside: np.ndarray,
                       attrs: dict) -> xr.DataArray:
    """The product as sink-positive g C m-2 month-1 (each month 1/12 of its year) on ``grid``,
    NaN outside the study area; FluxInputError for missing years, units or coverage."""
    da, where = _open(spec, m)
    declared = spec.units or da.attrs.get("units")
    try:
        factor, _offset = u.conversion(declared, "g m-2 yr-1")
    except (u.UnitError, TypeError) as e:
        raise FluxInputError(spec.name, where, f"units {declared!r}: {e}") from None
    years = [int(y) for y in da["year"].values]
    missing = [y for y in m.year_list if y not in years]
    if missing:
        raise FluxInputError(spec.name, where, f"missing years {missing} (it has "
                             f"{years[0]}–{years[-1]})")
    src = grid_of(da)
    src_lat = (round(src.north * src.per_degree) - np.arange(src.nlat + 1)) / src.per_degree
    src_lon = (round(src.west * src.per_degree) + np.arange(src.nlon + 1)) / src.per_degree
    dst_lat = (round(grid.north * grid.per_degree) - np.arange(grid.nlat + 1)) / grid.per_degree
    dst_lon = (round(grid.west * grid.per_degree) + np.arange(grid.nlon + 1)) / grid.per_degree
    wy, wx = k.lat_weights(dst_lat, src_lat), k.lon_weights(dst_lon, src_lon)
    short = (inside > 0) & (k.coverage(wy, wx) < 1.0 - 1e-9)
    if short.any():
        raise FluxInputError(spec.name, where, f"the product does not cover the study area: "
                             f"{int(short.sum())} of {int((inside > 0).sum())} cells lie (partly) "
                             f"outside its grid {src}")
    rows, cols = k.active_window(wy), k.active_window(wx)
    sign = sign_factor(spec.sign)
    out = np.full((len(m.year_list) * 12,) + grid.shape, np.nan)
    for i, year in enumerate(m.year_list):       # a year at a time: bounded by one year's field
        values = np.asarray(da.sel(year=year).isel(lat=rows, lon=cols).values, dtype="f8")
        annual = k.conservative_regrid(values * factor * sign, wy[:, rows], wx[:, cols])
        out[i * 12:(i + 1) * 12] = annual[None] / 12.0
    out[:, inside == 0] = np.nan
    time = np.array([f"{y}-{mo:02d}-01" for y in m.year_list for mo in range(1, 13)],
                    dtype="datetime64[ns]")
    result = xr.DataArray(out, dims=("time", "lat", "lon"),
                          coords={"time": ("time", time), **grid.coords()}, name=spec.name)
    result.attrs = {
        "units": "g m-2 month-1",
        "long_name": f"{spec.name}: net land carbon sink per month (positive = uptake by the "
                     "land), an annual product spread evenly over its months",
        "sign_convention": "positive = sink (uptake by the land)",
        "cell_methods": "time: sum (amount per month) area: mean",
        "product_kind": spec.kind, "product_role": spec.role, "temporal_resolution": ANNUAL,
        "declared_units": str(declared), "declared_sign": str(spec.sign),
        "conversion": f"{declared!r} → g m-2 yr-1 (× {factor:g}), each month 1/12 of the year",
        "time_axis": "annual", "source_variable": spec.variable, "source_files": where,
        "source_grid": str(src),
        "regridding": "conservative (exact sin-latitude × longitude overlaps), renormalised "
                      "over valid source cells",
        **attrs,
    }
    return result
