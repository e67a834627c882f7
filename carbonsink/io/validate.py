"""The canonical input schema and its enforcement.

Every input dataset that reaches a product — synthetic, ingested or hand-made — passes
:func:`validate_inputs` first. Errors name the variable, the source (file or store URL) and what is
wrong, and they are raised before anything is written or published.
"""
from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from .. import units as u
import warnings

from ..grid import Grid, grid_of


class InputError(ValueError):
    """Bad input: names the variable, the source and the problem."""

    def __init__(self, variable: str | None, source: str | None, problem: str):
        self.variable, self.source, self.problem = variable, source, problem
        where = f" in {source}" if source else ""
        what = f"input variable {variable!r}" if variable else "inputs"
        super().__init__(f"{what}{where}: {problem}")

    def __reduce__(self):
        # picklable with its fields (a distributed worker raises it on the client unchanged)
        return (type(self), (self.variable, self.source, self.problem))


@dataclass(frozen=True)
class VarSpec:
    units: str
    dims: tuple[str, ...]
    valid_range: tuple[float, float]
    long_name: str
    standard_name: str | None = None
    kind: str = "continuous"  # continuous | fraction | mask | class


# The canonical input schema (README "Input schema"). Valid ranges are physical limits in the
# canonical units: generous enough for any real pixel, tight enough to catch a unit slip
# (SOC in g m⁻² declared as kg m⁻², temperature in K declared as °C, a -9999 fill value left in).
SCHEMA: dict[str, VarSpec] = {
    "npp": VarSpec("g m-2 yr-1", ("year", "lat", "lon"), (-500.0, 4000.0),
                   "annual net primary productivity (g C m-2 a-1 = t C km-2 a-1)",
                   "net_primary_productivity_of_biomass_expressed_as_carbon"),
    "tas": VarSpec("degC", ("time", "lat", "lon"), (-70.0, 50.0),
                   "monthly mean near-surface air temperature", "air_temperature"),
    "pr": VarSpec("mm month-1", ("time", "lat", "lon"), (0.0, 3000.0),
                  "monthly precipitation amount", "precipitation_amount"),
    "rsds": VarSpec("MJ m-2 yr-1", ("year", "lat", "lon"), (0.0, 12000.0),
                    "annual surface downwelling shortwave radiation",
                    "integral_wrt_time_of_surface_downwelling_shortwave_flux_in_air"),
    "aet": VarSpec("mm yr-1", ("year", "lat", "lon"), (0.0, 3000.0),
                   "annual actual evapotranspiration", "water_evapotranspiration_amount"),
    "soc": VarSpec("kg m-2", ("lat", "lon"), (0.0, 200.0),
                   "topsoil (0-30 cm) organic carbon density",
                   "soil_mass_content_of_carbon"),
    "carbonate_fraction": VarSpec("1", ("lat", "lon"), (0.0, 1.0),
                                  "fraction of the cell on carbonate rock", kind="fraction"),
    "land_mask": VarSpec("1", ("lat", "lon"), (0.0, 1.0), "land (1) inside China, else 0",
                         "land_binary_mask", kind="mask"),
    # optional: river basins (integer ids; 0 = land outside every basin) for the ionic-strength
    # model of the karst sink (SCIENCE.md §3); ids are stored exactly in float32 up to 2**24
    "basin": VarSpec("1", ("lat", "lon"), (0.0, 2.0 ** 24),
                     "river basin id (0: land in no basin)", kind="class"),
    # optional: the carbon-sequestration services inputs (SCIENCE.md §7, README "Services").
    # Land use is stored as float32 class codes (exact up to 2**24), NaN off land like every field.
    "lulc": VarSpec("1", ("year", "lat", "lon"), (1.0, 999.0),
                    "land use / land cover class (CNLUCC-style code: first digit = primary class)",
                    "area_type", kind="class"),
    "population": VarSpec("km-2", ("year", "lat", "lon"), (0.0, 2.0e5),
                          "population density (persons km-2)"),
    "gdp": VarSpec("CNY km-2", ("year", "lat", "lon"), (0.0, 1.0e12),
                   "gross domestic product density (CNY km-2, current prices)"),
    "elevation": VarSpec("m", ("lat", "lon"), (-500.0, 9000.0),
                         "surface elevation above sea level", "surface_altitude"),
    "uas": VarSpec("m s-1", ("time", "lat", "lon"), (-75.0, 75.0),
                   "monthly mean eastward near-surface (10 m) wind", "eastward_wind"),
    "vas": VarSpec("m s-1", ("time", "lat", "lon"), (-75.0, 75.0),
                   "monthly mean northward near-surface (10 m) wind", "northward_wind"),
}

# The services inputs: all or none of them (a dataset with some is refused by the services).
SERVICES = ("lulc", "population", "gdp", "elevation", "uas", "vas")

# Schema variables a dataset may leave out (products that need them say so).
OPTIONAL = ("basin",) + SERVICES

# What each product needs from the schema.
REQUIRED = {
    "nep": ("npp", "tas", "pr", "soc", "land_mask"),
    "nep_pei": ("npp", "tas", "pr", "land_mask"),
    "all": tuple(v for v in SCHEMA if v not in OPTIONAL),
    "services": SERVICES,
}


def _source(ds: xr.Dataset, var: str | None, source: str | None) -> str | None:
    if source:
        return source
    enc = ds[var].encoding if var and var in ds else {}
    return enc.get("source") or ds.attrs.get("source_url") or ds.encoding.get("source")


def validate_inputs(ds: xr.Dataset, variables=None, *, source: str | None = None,
                    check_values: bool = True) -> None:
    """Check a canonical input dataset; raise :class:`InputError` at the first problem.

    Structure (cheap, no data read): presence, dims, units attribute (must be a known spelling of
    the canonical quantity), grid, monthly series in whole years, consecutive years.
    Values (one dask pass over the inputs, chunk by chunk): physical range in canonical units and
    missing values on land pixels (an all-NaN tile, a fill value turned NaN, a hole).
    """
    variables = tuple(variables or REQUIRED["all"])
    for var in variables:
        if var not in ds.data_vars:
            raise InputError(var, _source(ds, None, source),
                             f"missing (the dataset has {sorted(ds.data_vars)})")
    try:
        grid_of(ds)
    except (KeyError, ValueError) as e:
        raise InputError(_off_grid_coord(ds), _source(ds, None, source),
                         f"not on a carbonsink grid: {e}") from e

    for var in variables:
        spec, da, src = SCHEMA[var], ds[var], _source(ds, var, source)
        if tuple(da.dims) != spec.dims:
            raise InputError(var, src, f"has dims {tuple(da.dims)}, expected {spec.dims}")
        declared = da.attrs.get("units")
        if declared is None:
            raise InputError(var, src, f"has no units attribute; expected {spec.units!r}")
        if not u.same_quantity(declared, spec.units):
            raise InputError(var, src, f"units {declared!r} are not {spec.units!r} "
                                       f"(nor a known spelling convertible to it)")
        if "time" in da.dims:
            _check_monthly(ds, var, src)
        if "year" in da.dims:
            _check_years(ds["year"].values, var, src)
    if "time" in ds.dims and "year" in ds.dims:
        months_years = np.unique(ds["time"].dt.year.values)
        if not np.array_equal(months_years, ds["year"].values):
            raise InputError(None, _source(ds, None, source),
                             f"monthly years {months_years.min()}–{months_years.max()} differ from "
                             f"annual years {ds['year'].values.min()}–{ds['year'].values.max()}")
    if check_values:
        _check_values(ds, variables, source)


def _off_grid_coord(ds: xr.Dataset) -> str | None:
    """Which of lat/lon is not a grid axis while the other is (None if both or neither are): a
    grid axis has a regular step dividing 1° and centres half a cell off multiples of it."""
    for name in ("lat", "lon"):
        if name not in ds.coords:
            return name

    def axis_ok(values, descending):
        v = np.asarray(values, dtype="f8")
        if v.size < 2:
            return v.size == 1
        step = np.diff(v)
        if descending != bool(step[0] < 0) or not np.allclose(step, step[0], rtol=1e-6):
            return False
        try:
            g = Grid(abs(step[0]))
        except ValueError:
            return False
        k = (v - g.res / 2) / g.res
        return bool(np.allclose(k, np.round(k), atol=1e-3))

    lat_ok, lon_ok = axis_ok(ds["lat"].values, True), axis_ok(ds["lon"].values, False)
    if lat_ok != lon_ok:
        return "lon" if lat_ok else "lat"
    return None


def _check_years(years, var, src):
    years = np.asarray(years)
    if years.size == 0:
        raise InputError(var, src, "has no years")
    if np.any(np.diff(years) != 1):
        missing = sorted(set(range(int(years.min()), int(years.max()) + 1)) - set(years.tolist()))
        problem = f"missing years {missing}" if missing else "years are not consecutive/ascending"
        raise InputError(var, src, problem)


def _check_monthly(ds, var, src):
    time = ds["time"]
    n = time.size
    if n == 0 or n % 12:
        raise InputError(var, src, f"monthly series of {n} steps is not a whole number of years")
    try:
        months = time.dt.month.values
        years = time.dt.year.values
    except (TypeError, AttributeError) as e:
        raise InputError(var, src, f"time coordinate is not datetime-like: {e}") from e
    if not np.array_equal(months, np.tile(np.arange(1, 13), n // 12)):
        raise InputError(var, src, "monthly steps must run January→December for each year")
    _check_years(np.unique(years), var, src)
    if not np.array_equal(years, np.repeat(np.unique(years), 12)):
        raise InputError(var, src, "monthly time steps are not in calendar order")


def value_stats(ds: xr.Dataset, variables) -> dict:
    """The lazy statistics the value checks need: min, max, NaNs on land, count per variable.

    Returned lazy so a caller can compute them in the same dask pass as another use of the same
    inputs (e.g. the staged write of a publish) and check them with :func:`check_value_stats`.
    """
    land = ds["land_mask"] > 0 if "land_mask" in ds else None
    stats = {}
    if land is not None:
        # any value but 0/1 (0.5, 255, NaN) is checked first: the mask decides where "land" is
        stats["_not_binary"] = (~ds["land_mask"].isin([0, 1])).sum()
    for var in variables:
        da = ds[var]
        stats[var] = (da.min(skipna=True), da.max(skipna=True),
                      (da.isnull() & land).sum() if land is not None and var != "land_mask"
                      else xr.DataArray(0), da.count())
    return stats


def check_value_stats(ds: xr.Dataset, variables, computed: dict, source=None) -> None:
    """Raise :class:`InputError` for the first problem the computed :func:`value_stats` show."""
    if "_not_binary" in computed and int(computed["_not_binary"]):
        raise InputError("land_mask", _source(ds, "land_mask", source),
                         f"must hold only 0 and 1; {int(computed['_not_binary'])} cells hold "
                         "other values or NaN")
    for var in variables:
        spec, src = SCHEMA[var], _source(ds, var, source)
        vmin, vmax, nan_on_land, count = (float(x) for x in computed[var])
        if count == 0:
            raise InputError(var, src, "is entirely NaN")
        if nan_on_land:
            raise InputError(var, src, f"has {int(nan_on_land)} missing (NaN) values on land pixels "
                                       f"(an all-NaN tile, a hole, or a fill value)")
        lo, hi = u.convert(np.array([vmin, vmax]), ds[var].attrs["units"], spec.units)
        if lo < spec.valid_range[0] or hi > spec.valid_range[1]:
            raise InputError(var, src, f"values {lo:g}..{hi:g} {spec.units} fall outside the "
                                       f"physical range {spec.valid_range} — wrong units, a fill "
                                       f"value (e.g. -9999) or negative amounts")


def compute_quietly(*collections):
    """dask.compute with numpy's all-NaN-slice warning silenced (an all-NaN chunk is reported as
    an InputError by the checks, not as a warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
        return dask.compute(*collections)


def _check_values(ds: xr.Dataset, variables, source):
    """One pass over the data: min, max, and NaNs where land_mask says land."""
    (computed,) = compute_quietly(value_stats(ds, variables))
    check_value_stats(ds, variables, computed, source)


def to_canonical_units(ds: xr.Dataset) -> xr.Dataset:
    """Convert every schema variable to its canonical units (lazy), recording the original."""
    out = ds.copy()
    for var, spec in SCHEMA.items():
        if var in out and out[var].attrs.get("units") != spec.units:
            declared = out[var].attrs["units"]
            attrs = dict(out[var].attrs, units=spec.units, units_converted_from=declared)
            out[var] = u.convert(out[var], declared, spec.units)
            out[var].attrs = attrs
    return out
