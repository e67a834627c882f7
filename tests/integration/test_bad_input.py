"""Bad input is rejected with a clear error naming the variable, before anything is published.

Issue requirement: "Bad input (missing variable, wrong units attr, wrong dims, all-NaN tile, negative
precipitation): a clear error naming the variable, before anything is published", and "unit mistakes
(P in mm into soil_tps) are converted or rejected, not silently accepted" (SCIENCE.md §1).

Every case starts from the synthetic China on the 1° grid for 2000–2002 (made once per module, loaded
into memory) and breaks one thing. Cases that go through the pipeline are published with
``publish_inputs`` into a store that is either empty or holds one earlier good publish; the store must be
byte-for-byte unchanged afterwards (same files, same contents, same ``latest``, same versions).

"""
from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from carbonsink.cli import main as cli_main
from carbonsink.config import load_config
from carbonsink.io.store import Store
from carbonsink.io.validate import SCHEMA, InputError, validate_inputs
from carbonsink.kernels import respiration as resp
from carbonsink.pipeline import publish_inputs
from carbonsink.products.nep import compute_nep
from carbonsink.synthetic import make_inputs
from carbonsink.units import UnitError

pytestmark = pytest.mark.integration

GRID, YEARS = "1", (2000, 2002)
SOURCE = "carbonsink.synthetic"          # what publish_inputs passes as the error's source
# A spatial block of the 1° grid that is land in every cell (Qinghai/Gansu/Sichuan, 37.5–30.5°N,
# 97.5–104.5°E): rows 16:24, columns 24:32. With 8×8 chunks it is exactly one dask tile.
TILE = (slice(16, 24), slice(24, 32))
RANGE = r"outside the physical range"


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_inputs() -> xr.Dataset:
    """The canonical synthetic inputs, computed once per module (numpy-backed)."""
    ds = make_inputs(GRID, YEARS).load()
    validate_inputs(ds)  # the starting point is good
    assert int(ds["land_mask"][TILE].min()) == 1, "TILE must be all land"
    return ds


@pytest.fixture
def good(good_inputs) -> xr.Dataset:
    """A private deep copy for one test to break."""
    return good_inputs.copy(deep=True)


def _cfg(root):
    return load_config(store=str(root), grid=GRID, years=f"{YEARS[0]}-{YEARS[1]}", env={})


def _snapshot(root) -> dict:
    """Everything under a store root: each directory, and each file's size, mtime and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel + "/"] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.join(rel, name)] = (st.st_size, st.st_mtime_ns, digest)
    return out


def _state(store: Store, root) -> dict:
    return {
        "files": _snapshot(root),
        "latest": {n: store.latest("inputs", n) for n in ("synthetic", "regions")},
        "versions": {n: store.versions("inputs", n) for n in ("synthetic", "regions")},
    }


@pytest.fixture(params=["empty", "published"])
def store_before(request, tmp_path, good_inputs):
    """A store that is empty, or holds one good publish of the inputs, plus its config."""
    root = tmp_path / "store"
    store = Store(str(root))
    cfg = _cfg(root)
    if request.param == "published":
        p_inputs, p_regions = publish_inputs(store, cfg, good_inputs.copy(deep=True))
        assert store.latest("inputs", "synthetic") == p_inputs.version
        assert store.versions("inputs", "regions") == [p_regions.version]
    return store, cfg, root


def _assert_input_error(excinfo, var: str, phrase: str):
    msg = str(excinfo.value)
    assert excinfo.value.variable == var, msg
    assert f"'{var}'" in msg, f"the error does not name {var!r}: {msg}"
    assert re.search(phrase, msg), f"no {phrase!r} in: {msg}"


# --- how each input is broken -------------------------------------------------------------------
def _with(ds: xr.Dataset, var: str, values, **attrs) -> xr.Dataset:
    """``ds`` with ``var`` replaced by ``values`` (same dims), keeping its attrs unless overridden."""
    old = ds[var]
    new = xr.DataArray(np.asarray(values), dims=old.dims, coords=old.coords,
                       attrs={**old.attrs, **attrs})
    return ds.assign({var: new})


def _drop_units(ds, var):
    ds[var].attrs.pop("units")
    return ds


def _land_idx(ds):
    return ds["land_mask"].values > 0


def _nan_tile(var):
    def make(ds):
        v = ds[var].values.copy()
        v[(..., *TILE)] = np.nan
        return _with(ds, var, v)
    return make


def _negative_pr(ds):
    v = ds["pr"].values.copy()
    iy, ix = np.argwhere(_land_idx(ds))[100]
    v[7, iy, ix] = -3.0  # one land pixel, one month: a negative amount
    return _with(ds, "pr", v)


def _npp_fill(ds):
    v = ds["npp"].values.copy()
    iy, ix = np.argwhere(_land_idx(ds))[[10, 200, 500]].T
    v[1, iy, ix] = -9999.0  # a fill value left in (not decoded to NaN)
    return _with(ds, "npp", v)


def _annual_tas(ds):
    annual = ds["tas"].groupby("time.year").mean().astype("f4")
    annual.attrs = dict(ds["tas"].attrs)
    return ds.drop_vars("tas").assign(tas=annual)


def _annual_soc(ds):
    soc = ds["soc"].expand_dims(year=ds["year"]).copy()
    soc.attrs = dict(ds["soc"].attrs)
    return ds.assign(soc=soc)


def _npp_only_missing_year(ds):
    # xarray aligns on assignment: npp's 2001 becomes NaN while rsds/aet keep it
    npp = ds["npp"].drop_sel(year=2001)
    out = ds.copy()
    out["npp"] = npp
    assert np.isnan(out["npp"].sel(year=2001).values).all()
    return out


def _mask(values_fn, dtype="f4"):
    def make(ds):
        m = ds["land_mask"].values.astype(dtype)
        values_fn(m, ds)
        return _with(ds, "land_mask", m)
    return make


def _mask_half(m, ds):
    m[TILE] = 0.5  # a fractional "mask" (land fraction) passed as land_mask


def _mask_nan(m, ds):
    m[TILE] = np.nan


def _mask_two_on_land(m, ds):
    m[TILE] = 2


def _mask_255_outside(m, ds):
    m[m == 0] = 255  # a uint8 fill value left in outside China


def _entirely_nan(var):
    def make(ds):
        return _with(ds, var, np.full(ds[var].shape, np.nan, dtype="f4"))
    return make



# (id, how to break the inputs, the variable the error must name, a phrase the message must hold)
CASES = [
    pytest.param(lambda ds: ds.drop_vars("pr"), "pr", r"missing", id="missing-variable-pr"),
    pytest.param(lambda ds: ds.drop_vars("soc"), "soc", r"missing", id="missing-variable-soc"),
    # wrong units attribute
    pytest.param(lambda ds: _with(ds, "tas", ds["tas"].values + 273.15), "tas", RANGE,
                 id="tas-kelvin-values-declared-degC"),
    pytest.param(lambda ds: _with(ds, "tas", ds["tas"].values, units="K"), "tas", RANGE,
                 id="tas-degC-values-declared-K"),
    pytest.param(lambda ds: _with(ds, "tas", ds["tas"].values, units="furlongs"), "tas",
                 r"units 'furlongs' are not 'degC'", id="tas-units-unknown-furlongs"),
    pytest.param(lambda ds: _with(ds, "pr", ds["pr"].values, units="mm yr-1"), "pr",
                 r"units 'mm yr-1' are not 'mm month-1'", id="pr-units-annual-on-monthly"),
    pytest.param(lambda ds: _with(ds, "pr", ds["pr"].values, units="kg m-2 s-1"), "pr",
                 r"units 'kg m-2 s-1' are not", id="pr-units-flux-per-second"),
    pytest.param(lambda ds: _drop_units(ds, "pr"), "pr", r"no units attribute",
                 id="pr-units-missing"),
    pytest.param(lambda ds: _drop_units(ds, "soc"), "soc", r"no units attribute",
                 id="soc-units-missing"),
    # unit slips caught by the physical range
    pytest.param(lambda ds: _with(ds, "soc", ds["soc"].values * 1000.0), "soc", RANGE,
                 id="soc-g-m2-declared-kg-m2"),
    pytest.param(lambda ds: _with(ds, "pr", ds["pr"].values, units="cm month-1"), "pr", RANGE,
                 id="pr-mm-values-declared-cm"),
    # wrong dims
    pytest.param(lambda ds: ds.assign(tas=ds["tas"].transpose("lat", "lon", "time")), "tas",
                 r"has dims \('lat', 'lon', 'time'\), expected \('time', 'lat', 'lon'\)",
                 id="tas-transposed"),
    pytest.param(_annual_tas, "tas", r"has dims \('year', 'lat', 'lon'\), expected \('time'",
                 id="tas-monthly-given-as-annual"),
    pytest.param(_annual_soc, "soc", r"has dims \('year', 'lat', 'lon'\), expected \('lat', 'lon'\)",
                 id="soc-static-given-per-year"),
    # missing values on land
    pytest.param(_nan_tile("pr"), "pr", r"missing \(NaN\) values on land", id="all-nan-tile-pr"),
    pytest.param(_nan_tile("soc"), "soc", r"missing \(NaN\) values on land",
                 id="all-nan-tile-soc"),
    pytest.param(_nan_tile("npp"), "npp", r"missing \(NaN\) values on land",
                 id="all-nan-tile-npp"),
    pytest.param(_entirely_nan("soc"), "soc", r"entirely NaN", id="entirely-nan-soc"),
    pytest.param(_entirely_nan("tas"), "tas", r"entirely NaN", id="entirely-nan-tas"),
    # impossible values
    pytest.param(_negative_pr, "pr", r"negative amounts", id="negative-precipitation"),
    pytest.param(_npp_fill, "npp", r"-9999", id="npp-fill-value-9999"),
    # time axes
    pytest.param(lambda ds: ds.drop_sel(year=2001), "npp", r"missing years \[2001\]",
                 id="annual-series-missing-year"),
    pytest.param(_npp_only_missing_year, "npp", r"missing \(NaN\) values on land",
                 id="npp-only-missing-year"),
    pytest.param(lambda ds: ds.isel(time=slice(0, 30)), "tas",
                 r"30 steps is not a whole number of years", id="monthly-not-whole-years"),
    pytest.param(lambda ds: ds.isel(time=slice(3, 27)), "tas", r"January→December",
                 id="monthly-not-starting-january"),
    # land mask
    pytest.param(_mask(_mask_two_on_land), "land_mask", r"0 and 1|" + RANGE,
                 id="land-mask-value-2-on-land"),
    pytest.param(_mask(_mask_half), "land_mask", r"only 0 and 1", id="land-mask-fraction-0.5"),
    pytest.param(_mask(_mask_nan), "land_mask", r"only 0 and 1|NaN", id="land-mask-nan-tile"),
    pytest.param(_mask(_mask_255_outside, dtype="u1"), "land_mask", r"only 0 and 1|" + RANGE,
                 id="land-mask-255-fill-outside-china"),
]


# --- the pipeline: rejected with the variable named, store untouched ----------------------------
@pytest.mark.parametrize("break_inputs, var, phrase", CASES)
def test_publish_inputs_rejects_bad_input_and_leaves_store_unchanged(
        good, store_before, break_inputs, var, phrase):
    store, cfg, root = store_before
    bad = break_inputs(good)
    before = _state(store, root)
    with pytest.raises(InputError) as excinfo:
        publish_inputs(store, cfg, bad)
    _assert_input_error(excinfo, var, phrase)
    assert SOURCE in str(excinfo.value), "the error should name the source"
    assert _state(store, root) == before, "a rejected input touched the store"


@pytest.mark.parametrize("shift", [
    pytest.param(lambda ds: ds.assign_coords(lon=ds["lon"] + 0.5), id="lon-shifted-half-cell"),
    pytest.param(lambda ds: ds.assign_coords(lon=ds["lon"] + 0.25), id="lon-shifted-quarter"),
    pytest.param(lambda ds: ds.isel(lat=slice(None, None, -1)), id="lat-ascending"),
])
def test_off_grid_coordinates_rejected_before_publish(good, store_before, shift):
    store, cfg, root = store_before
    before = _state(store, root)
    with pytest.raises(InputError, match=r"not on a carbonsink grid") as excinfo:
        publish_inputs(store, cfg, shift(good))
    # the message says what a grid must be: edges on multiples of the resolution, or descending lat
    assert re.search(r"multiple of the 1° resolution|must be descending", str(excinfo.value))
    assert _state(store, root) == before


@pytest.mark.parametrize("shift, coord", [
    pytest.param(lambda ds: ds.assign_coords(lon=ds["lon"] + 0.5), "lon", id="lon-shifted"),
    pytest.param(lambda ds: ds.isel(lat=slice(None, None, -1)), "lat", id="lat-ascending"),
])
def test_off_grid_error_names_the_coordinate(good, shift, coord):
    with pytest.raises(InputError) as excinfo:
        validate_inputs(shift(good), source=SOURCE)
    _assert_input_error(excinfo, coord, r"not on a carbonsink grid")


# numpy warns on the all-NaN chunk inside validation's nanmin/nanmax; the error is what matters here
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
def test_all_nan_dask_tile_rejected(good, store_before):
    """The same check on lazy inputs whose one 8×8 chunk is entirely NaN (a lost tile)."""
    store, cfg, root = store_before
    bad = _nan_tile("tas")(good).chunk({"lat": 8, "lon": 8, "time": -1, "year": -1})
    assert np.isnan(bad["tas"].data.blocks[0, 2, 3].compute()).all()  # rows 16:24, cols 24:32
    before = _state(store, root)
    with pytest.raises(InputError) as excinfo:
        publish_inputs(store, cfg, bad)
    _assert_input_error(excinfo, "tas", r"missing \(NaN\) values on land")
    # 8×8 land pixels × 36 months
    assert f"has {8 * 8 * 36} missing" in str(excinfo.value)
    assert _state(store, root) == before


def test_good_inputs_still_publish(good, tmp_path):
    """Control: the unbroken inputs pass and publish (so each case fails for its own reason)."""
    store = Store(str(tmp_path / "store"))
    p_inputs, _ = publish_inputs(store, _cfg(tmp_path / "store"), good)
    assert store.latest("inputs", "synthetic") == p_inputs.version


# --- the CLI ----------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    for var in list(os.environ):
        if var.startswith("CARBONSINK_"):
            monkeypatch.delenv(var)


@pytest.mark.parametrize("args, phrase", [
    pytest.param(["--years", "2020-2000"], r"years \(2020, 2000\) run backwards",
                 id="years-backwards"),
    pytest.param(["--resolution", "0.3"], r"grid resolution 0\.3° does not divide 1°", id="resolution-0.3"),
    pytest.param(["--years", "20x0-2002"], r"years must look like 2000-2020", id="years-garbled"),
])
def test_cli_demo_rejects_bad_options(tmp_path, clean_env, args, phrase):
    store = tmp_path / "demo-store"
    result = CliRunner().invoke(cli_main, ["demo", *args, "--store", str(store), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert re.search(phrase, result.stderr), result.stderr
    assert result.stderr.startswith("error: invalid configuration")
    assert "Traceback" not in result.output
    assert not store.exists(), "a rejected configuration created the store"


# --- unit mistakes: converted or rejected, never silently wrong ---------------------------------
@pytest.fixture(scope="module")
def land_climate(good_inputs):
    """Monthly T (°C), P (mm month-1) and SOC (kg m-2) of the land pixels, time last."""
    land = good_inputs["land_mask"].values > 0
    tas = good_inputs["tas"].transpose("lat", "lon", "time").values[land]
    pr = good_inputs["pr"].transpose("lat", "lon", "time").values[land]
    soc = good_inputs["soc"].values[land]
    days = resp.days_in_month(good_inputs["year"].values)
    return tas, pr, soc, days


@pytest.mark.parametrize("model", ["soil_tps", "pei", "bond_lamberty"])
def test_rh_kernel_converts_declared_pr_units(land_climate, model):
    tas, pr, soc, days = land_climate
    in_mm = resp.rh_annual(tas, pr, soc, days, model=model, pr_units="mm month-1",
                           soc_units="kg m-2")
    in_cm = resp.rh_annual(tas, pr / 10.0, soc, days, model=model, pr_units="cm month-1",
                           soc_units="kg m-2")
    assert in_mm.shape == (tas.shape[0], 3)
    np.testing.assert_allclose(in_cm, in_mm, rtol=1e-6)


def test_rh_kernel_converts_declared_soc_units(land_climate):
    tas, pr, soc, days = land_climate
    in_kg = resp.rh_annual(tas, pr, soc, days, pr_units="mm month-1", soc_units="kg m-2")
    in_g = resp.rh_annual(tas, pr, soc * 1000.0, days, pr_units="mm month-1", soc_units="g m-2")
    np.testing.assert_allclose(in_g, in_kg, rtol=1e-6)


@pytest.mark.parametrize("pr_units, kwargs, match", [
    pytest.param(None, {}, r"pr_units must be declared", id="pr-undeclared"),
    pytest.param("furlongs", {}, r"unknown units 'furlongs'", id="pr-furlongs"),
    pytest.param("mm yr-1", {}, r"cannot convert 'mm yr-1'", id="pr-annual-units"),
    pytest.param("mm month-1", {"soc_units": None}, r"soc_units must be declared",
                 id="soc-undeclared"),
])
def test_rh_kernel_rejects_undeclared_or_unknown_units(land_climate, pr_units, kwargs, match):
    tas, pr, soc, days = land_climate
    kw = {"soc_units": "kg m-2", **kwargs}
    with pytest.raises(UnitError, match=match):
        resp.rh_annual(tas, pr, soc, days, model="soil_tps", pr_units=pr_units, **kw)


def test_mm_declared_as_cm_is_markedly_wrong(land_climate):
    """Why units must be declared: P in mm read as cm saturates P/(P + 0.68) → Rh too high, with
    no error from the kernel (SCIENCE.md §1). Only the declaration (or the ingest range) stops it."""
    tas, pr, soc, days = land_climate
    right = resp.rh_annual(tas, pr, soc, days, pr_units="mm month-1", soc_units="kg m-2")
    wrong = resp.rh_annual(tas, pr, soc, days, pr_units="cm month-1", soc_units="kg m-2")
    rel = (wrong - right) / right
    assert (rel > 0).all(), "a larger P can only raise Rh"
    assert rel.mean() > 0.2 and rel.max() > 1.0, (rel.mean(), rel.max())


@pytest.mark.parametrize("model", ["soil_tps", "pei"])
def test_compute_nep_converts_pr_declared_in_cm(good, model):
    in_mm = compute_nep(good, rh_model=model).load()
    cm = _with(good, "pr", good["pr"].values / 10.0, units="cm month-1")
    in_cm = compute_nep(cm, rh_model=model).load()
    land = good["land_mask"] > 0
    assert int(in_mm["nep"].where(land).count()) == 3 * int(land.sum())
    for var in ("rh", "nep"):
        xr.testing.assert_allclose(in_cm[var], in_mm[var], rtol=1e-5, atol=1e-3)


def test_compute_nep_rejects_mm_declared_as_cm_when_validating(good):
    bad = _with(good, "pr", good["pr"].values, units="cm month-1")
    with pytest.raises(InputError) as excinfo:
        compute_nep(bad, validate=True)
    _assert_input_error(excinfo, "pr", RANGE)


@pytest.mark.parametrize("units, phrase", [
    pytest.param(None, r"no units attribute", id="missing"),
    pytest.param("furlongs", r"units 'furlongs' are not", id="furlongs"),
])
def test_compute_nep_rejects_unknown_pr_units(good, units, phrase):
    bad = good.copy()
    bad["pr"] = good["pr"].copy()
    if units is None:
        bad["pr"].attrs.pop("units")
    else:
        bad["pr"].attrs["units"] = units
    with pytest.raises(InputError) as excinfo:
        compute_nep(bad)  # structure checks run even without validate=True
    _assert_input_error(excinfo, "pr", phrase)


def test_compute_nep_rejects_annual_tas_without_annual_climate(good):
    bad = _annual_tas(good)
    assert bad["tas"].dims == ("year", "lat", "lon")
    with pytest.raises(InputError) as excinfo:
        compute_nep(bad)
    _assert_input_error(excinfo, "tas", r"is annual.*annual_climate=True")


def test_schema_units_are_what_the_cases_assume():
    """The cases above hard-code canonical units; fail loudly here if the schema moves."""
    assert SCHEMA["tas"].units == "degC" and SCHEMA["pr"].units == "mm month-1"
    assert SCHEMA["soc"].units == "kg m-2" and SCHEMA["npp"].units == "g m-2 yr-1"
    assert SCHEMA["land_mask"].kind == "mask"
