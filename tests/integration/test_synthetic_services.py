"""Synthetic services inputs (land use, population, GDP, elevation, 10 m wind) and the synthetic
province statistics: schema, cell-exact sub-domains, untouched climate, plausible China totals and
class shares, monotonic urbanisation, wind regimes, and the planted population of the table."""
import numpy as np
import pytest

from carbonsink.config import RunConfig
from carbonsink.domains import get_domain
from carbonsink.grid import get_grid
from carbonsink.io.validate import SCHEMA, SERVICES, validate_inputs
from carbonsink.regions import region_masks
from carbonsink.synthetic import make_inputs
from carbonsink.synthetic_services import FUELS, LULC_CLASSES, make_province_statistics

pytestmark = pytest.mark.integration

YEARS = (2000, 2020)


@pytest.fixture(scope="module")
def china():
    """0.25° China 2000–2020 with the services (numpy-backed; the climate dropped)."""
    ds = make_inputs("0.25", YEARS)
    return ds.drop_vars(["tas", "pr", "npp", "rsds", "aet", "soc", "carbonate_fraction"]).load()


@pytest.fixture(scope="module")
def area_km2():
    return get_grid("0.25").cell_area() / 1e6


@pytest.fixture(scope="module")
def province():
    cfg = RunConfig(grid="0.25")
    return region_masks(cfg.grid_obj(), cfg.domain_obj(), cfg.region_set_specs())["province"]


def test_schema_dtypes_attrs_and_land(china):
    ds, land = china, china.land_mask.values > 0
    validate_inputs(ds, variables=SERVICES + ("land_mask",))
    for v in SERVICES:
        spec, da = SCHEMA[v], ds[v]
        assert da.dims == spec.dims and da.dtype == np.float32, v
        assert da.attrs["units"] == spec.units and da.attrs["long_name"] == spec.long_name
        assert da.attrs.get("standard_name") == spec.standard_name
        values = da.values
        assert np.isnan(values[..., ~land]).all() and not np.isnan(values[..., land]).any(), v
    assert ds.uas.sizes["time"] == 12 * ds.sizes["year"]
    assert set(np.unique(ds.lulc.values[:, land]).astype(int)) <= set(LULC_CLASSES)
    assert ds.lulc.attrs["flag_values"] == sorted(LULC_CLASSES)
    elev = ds.elevation.values[land]
    assert elev.min() >= -150 and elev.max() <= 8800
    # the Tibetan plateau is high, the North China Plain low
    assert ds.elevation.sel(lat=33.125, lon=89.125) > 4000
    assert ds.elevation.sel(lat=36.125, lon=116.125) < 300


def test_subdomain_and_single_year_are_the_china_cells(china):
    d = get_domain("bbox:100,25,110.5,35")
    g = d.grid("0.25")
    rows, cols = get_grid("0.25").window_of(g)
    cut = china.isel(lat=rows, lon=cols)
    for land in (d, d.mask(g)):                    # a Domain, and a numpy mask
        local = make_inputs(g, (2011, 2011), land=land, target_mb=0.05)
        local = local.load()
        inside = local.land_mask.values > 0
        assert inside.sum() > 100
        for v in SERVICES:
            a, b = local[v], cut[v]
            b = b.sel(year=[2011]) if "year" in b.dims else b.sel(time="2011") \
                if "time" in b.dims else b
            np.testing.assert_array_equal(a.values[..., inside], b.values[..., inside], err_msg=v)
            assert np.isnan(a.values[..., ~inside]).all()


def test_existing_fields_do_not_change_with_services():
    on = make_inputs("1", (2000, 2001)).load()
    off = make_inputs("1", (2000, 2001), services=False).load()
    assert not set(SERVICES) & set(off.data_vars) and set(SERVICES) <= set(on.data_vars)
    for v in off.data_vars:
        np.testing.assert_array_equal(on[v].values, off[v].values, err_msg=v)


def test_population_and_gdp_totals(china, area_km2):
    def total(v, year):
        return float(np.nansum(china[v].sel(year=year).values * area_km2))
    assert total("population", 2000) == pytest.approx(1.27e9, rel=0.15)
    assert total("population", 2020) == pytest.approx(1.41e9, rel=0.15)
    assert total("population", 2020) > total("population", 2000)
    assert total("gdp", 2000) == pytest.approx(1.0e13, rel=0.25)
    assert total("gdp", 2020) == pytest.approx(1.0e14, rel=0.25)
    pop = china.population.sel(year=2020)
    # city cores stand out of the rural background; the west is sparsely settled
    assert float(pop.sel(lat=31.125, lon=121.375, method="nearest")) > 3000
    assert float(pop.sel(lat=slice(40, 30), lon=slice(80, 95)).median()) < 5


def test_class_shares_and_their_change(china, area_km2):
    land = china.land_mask.values > 0
    a = np.where(land, area_km2, 0.0)
    codes = china.lulc.values

    def share(year, primary=None, code=None):
        c = codes[year - YEARS[0]]
        hit = (c // 10 == primary) if code is None else (c == code)
        return 100 * float((a * hit).sum() / a.sum())
    shares = {k: share(2020, k) for k in range(1, 7)}
    assert 17 <= shares[1] <= 22 and 20 <= shares[2] <= 26 and 26 <= shares[3] <= 34
    assert 2 <= shares[4] <= 4.5 and 2 <= shares[5] <= 4 and 17 <= shares[6] <= 25
    assert sum(shares.values()) == pytest.approx(100)
    assert 0.2 < share(2020, code=44) < 1.5 and share(2020, code=11) > 3
    # cities grow every year; a cell once urban stays urban
    urban = [share(y, code=51) for y in range(YEARS[0], YEARS[1] + 1)]
    assert all(b >= a_ for a_, b in zip(urban, urban[1:])) and urban[-1] > 1.3 * urban[0]
    was_urban = np.logical_or.accumulate(codes == 51, axis=0)
    assert ((codes == 51) == was_urban).all()
    # Grain for Green: cropland on slopes becomes woodland after 2000, never back
    crop_to_forest = (codes[0] // 10 == 1) & (codes[-1] // 10 == 2) & land
    assert crop_to_forest.sum() > 20 and share(2020, 2) > share(2000, 2)
    assert share(2020, 1) < share(2000, 1)
    # regions: desert in the north-west, grassland on the plateau, forest in the south-east
    def dominant(lat, lon):
        c = china.lulc.sel(year=2020, lat=lat, lon=lon).values // 10
        c = c[np.isfinite(c)].astype(int)
        return np.bincount(c).argmax()
    assert dominant(slice(41, 37), slice(78, 88)) == 6
    assert dominant(slice(35, 31), slice(88, 98)) == 3
    assert dominant(slice(28, 23), slice(108, 119)) == 2


def test_prevailing_winds(china):
    month = china.time.dt.month
    winter, summer = month.isin([10, 11, 12, 1, 2, 3]), month.isin([6, 7, 8])

    def mean(v, box, when=None):
        x = china[v].sel(**box)
        return float((x if when is None else x.where(when)).mean())
    north = dict(lat=slice(50, 38), lon=slice(80, 130))
    se = dict(lat=slice(30, 22), lon=slice(108, 122))
    assert mean("uas", north) > 1.5 and mean("uas", north, winter) > mean("uas", north, summer)
    assert mean("uas", se, winter) < -1 and mean("vas", se, winter) < -1     # towards the SW
    assert mean("uas", se, summer) > 0.5 and mean("vas", se, summer) > 0.5   # towards the NE
    assert mean("uas", dict(lat=slice(23, 18), lon=slice(105, 120)), winter) < -1
    speed = np.hypot(china.uas.values, china.vas.values)
    assert 1.5 < np.nanmedian(speed) < 5 and np.nanmax(speed) < 10


def test_province_statistics(china, province, area_km2):
    df = make_province_statistics(china, province)
    codes = dict(zip(province.attrs["flag_values"], province.attrs["region_names"]))
    present = sorted(set(np.unique(province.values).tolist()) - {0})
    assert len(df) == len(present) * (YEARS[1] - YEARS[0] + 1)
    assert not df.duplicated(["year", "province"]).any()
    assert set(df.province) == {codes[c] for c in present}
    numbers = df.drop(columns=["year", "province"])
    assert list(numbers.columns) == ["population", "pigs", "large_livestock",
                                     *[f"energy_{f}" for f in FUELS], "wood", "cement"]
    assert (numbers.dtypes == np.float64).all() and (numbers >= 0).all().all()
    # the population column is the field summed with true cell areas
    pop = china.population.values.astype("f8")
    for name in ("Sichuan", "Shanghai", "Xizang"):
        code = next(c for c, n in codes.items() if n == name)
        cells = province.values == code
        for year in (2000, 2013):
            hand = np.nansum(pop[year - YEARS[0]][cells] * area_km2[cells])
            row = df[(df.year == year) & (df.province == name)].iloc[0]
            assert row.population == pytest.approx(hand, rel=1e-10)
    nat = df.groupby("year").sum(numeric_only=True)
    energy = nat[[f"energy_{f}" for f in FUELS]].sum(axis=1)
    assert energy[2000] == pytest.approx(1.47e9, rel=0.25)
    assert energy[2020] == pytest.approx(4.9e9, rel=0.25)
    assert 0.55 < nat.energy_coal[2020] / energy[2020] < nat.energy_coal[2000] / energy[2000] < 0.75
    assert nat.pigs[2010] == pytest.approx(4.2e8, rel=0.25)
    assert nat.large_livestock[2010] == pytest.approx(1.0e8, rel=0.3)
    assert 1e8 < nat.wood[2010] < 3e8
    assert nat.cement[2000] == pytest.approx(6e8, rel=0.3)
    assert nat.cement[2020] == pytest.approx(2.4e9, rel=0.3)


def test_province_statistics_on_chunked_inputs_and_canonical_table():
    from carbonsink.io import services_tables as T

    cfg = RunConfig(grid="0.5")
    prov = region_masks(cfg.grid_obj(), cfg.domain_obj(), cfg.region_set_specs())["province"]
    ds = make_inputs("0.5", (2000, 2001), target_mb=0.05)   # many small tiles, lazy
    assert ds.population.data.npartitions >= 4
    df = make_province_statistics(ds, prov, seed=0)
    area = get_grid("0.5").cell_area() / 1e6
    pop = ds.population.sel(year=2001).values.astype("f8")
    row = df[(df.year == 2001) & (df.province == "Henan")].iloc[0]
    code = prov.attrs["flag_values"][prov.attrs["region_names"].index("Henan")]
    hand = np.nansum((pop * area)[prov.values == code])
    assert row.population == pytest.approx(hand, rel=1e-10)
    table = T.read_province_statistics(df, list(FUELS), years=[2000, 2001])
    assert len(table) == len(df)
    again = make_province_statistics(ds, prov, seed=0)
    assert again.equals(df)
    other = make_province_statistics(ds, prov, seed=1)
    np.testing.assert_array_equal(other.population, df.population)
    assert not np.allclose(other.pigs, df.pigs)
