"""The OLS intercept is the fitted value at the first year of the series, not at year 0."""
import numpy as np
import pytest
import xarray as xr

from carbonsink.kernels import trend as k
from carbonsink.products.trends import compute_trends

pytestmark = pytest.mark.unit

YEARS = np.arange(2000, 2011, dtype="f8")
LINE = 100.0 + 2.0 * (YEARS - 2000)          # hand-computed: intercept 100 at 2000, slope 2


def test_kernel_intercept_at_first_year():
    slope, intercept, p = k.ols_trend(LINE, x=YEARS)
    assert float(slope) == pytest.approx(2.0, abs=1e-12)
    assert float(intercept) == pytest.approx(100.0, abs=1e-9)
    d = k.trend_stats(LINE, x=YEARS)
    assert float(d["intercept"]) == pytest.approx(100.0, abs=1e-9)


def test_kernel_intercept_at_the_series_first_year_when_a_pixel_misses_it():
    # the reference is the series' first year for every pixel, not each pixel's first valid year
    y = np.stack([LINE, LINE], axis=1)
    y[:3, 1] = np.nan
    _, intercept, _ = k.ols_trend(y, x=YEARS)
    np.testing.assert_allclose(intercept, [100.0, 100.0], atol=1e-9)
    # without x the axis is 0..n-1, so the first step is still x = 0
    _, intercept, _ = k.ols_trend(LINE)
    assert float(intercept) == pytest.approx(100.0, abs=1e-9)


@pytest.mark.parametrize("chunked", [False, True])
def test_product_intercept_and_attrs(chunked):
    rng = np.random.default_rng(0)
    shape = (YEARS.size, 3, 4)
    data = np.broadcast_to(LINE[:, None, None], shape) + 0.0 * rng.normal(size=shape)
    da = xr.DataArray(data.astype("f4"), dims=("year", "lat", "lon"),
                      coords={"year": YEARS.astype(int)}, name="nep",
                      attrs={"units": "g m-2 yr-1"})
    if chunked:
        da = da.chunk({"lat": 2, "lon": 2})
    ds = compute_trends(da).compute()
    np.testing.assert_allclose(ds["slope"].values, 2.0, atol=1e-4)
    np.testing.assert_allclose(ds["intercept"].values, 100.0, atol=1e-3)
    attrs = ds["intercept"].attrs
    assert attrs["units"] == "g m-2 yr-1"
    assert "first year" in attrs["long_name"] and "2000" in attrs["long_name"]
    assert attrs["reference_year"] == 2000
