"""`carbonsink.products.services.compute_storage`: the InVEST carbon model on a carbonsink grid
(numpy and dask give the same), true-area totals, change and NPV (SCIENCE.md §7)."""
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from carbonsink.grid import get_grid
from carbonsink.kernels.services import SEED003_POOLS
from carbonsink.products.services import compute_storage

pytestmark = pytest.mark.integration


def _lulc(grid, values):
    return xr.DataArray(values.astype("i2"), dims=("lat", "lon"),
                        coords={"lat": grid.lat, "lon": grid.lon}, name="lulc")


def test_storage_by_hand_numpy_and_dask_and_valuation():
    g = get_grid("1")
    rng = np.random.default_rng(3)
    codes = rng.integers(1, 7, g.shape)
    codes[0, :5] = -1                                    # nodata
    pools = pd.DataFrame({k: v for k, v in SEED003_POOLS.items()})
    lulc = _lulc(g, codes).assign_attrs(nodata=-1)
    alt = _lulc(g, np.where(codes == 1, 2, codes)).assign_attrs(nodata=-1)  # cropland → forest
    val = dict(price=43, discount_rate=-7.1, rate_change=2.8, year_bas=2016, year_alt=2030)
    a = compute_storage(lulc, pools, alt, valuation=val)
    b = compute_storage(lulc.chunk({"lat": 10, "lon": 20}), pools,
                        alt.chunk({"lat": 10, "lon": 20}), valuation=val).compute()
    xr.testing.assert_allclose(a, b, rtol=1e-12)
    totals = dict(zip(SEED003_POOLS["lucode"], SEED003_POOLS["c_above"] + SEED003_POOLS["c_below"]
                      + SEED003_POOLS["c_soil"] + SEED003_POOLS["c_dead"]))
    want = np.vectorize(lambda c: totals.get(c, np.nan))(codes)
    np.testing.assert_allclose(a.c_total.values, want, rtol=1e-12)
    assert np.isnan(a.c_total.values[0, :5]).all()
    # seed 003 table 2: forest 331.21, cropland 215.92 t C ha-1
    assert a.c_total.values[codes == 2][0] == pytest.approx(331.21)
    assert a.c_total.values[codes == 1][0] == pytest.approx(215.92)
    # t C per cell with spherical areas (ha = 1e4 m2), change and NPV (InVEST's factor 59.00136)
    np.testing.assert_allclose(a.c_total_cell.values, want * g.cell_area() * 1e-4, rtol=1e-12)
    np.testing.assert_allclose(a.c_change.values[codes == 1], 331.21 - 215.92, rtol=1e-12)
    assert a.npv.attrs["npv_factor"] == pytest.approx(59.00136, abs=1e-5)
    np.testing.assert_allclose(a.npv.values[codes == 1], (331.21 - 215.92) * 59.0013607025,
                               rtol=1e-9)


def test_codes_missing_from_the_pool_table_are_refused():
    g = get_grid("1")
    pools = pd.DataFrame({k: v for k, v in SEED003_POOLS.items()})
    codes = np.full(g.shape, 2)
    codes[3, 3] = 9
    with pytest.raises(ValueError, match="9"):
        compute_storage(_lulc(g, codes), pools)
    with pytest.raises(ValueError, match="c_soil"):
        compute_storage(_lulc(g, np.full(g.shape, 2)), pools.drop(columns="c_soil"))
