"""The demo's synthetic river basins on a small study area (a province at 1°): fewer basins, each
with at least one cell of the domain — `carbonsink demo --domain guizhou --resolution 1` used to
stop with "basins [...] have no cell"."""
import numpy as np
import pytest

from carbonsink.config import load_config
from carbonsink.pipeline import domain_land, synthetic_basins
from carbonsink.synthetic import make_basins

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("domain, grid", [("guizhou", "1"), ("sichuan", "1"), ("hainan", "1"),
                                          ("guizhou", "0.5")])
def test_every_basin_has_a_cell_of_a_small_domain(domain, grid):
    cfg = load_config(None, grid=grid, domain=domain, env={})
    land = np.asarray(domain_land(cfg)) > 0
    b = synthetic_basins(cfg)
    ids = b.values
    n = len(b.attrs["flag_values"])
    assert n == max(1, min(40, int(land.sum()) // 3))
    assert set(np.unique(ids[ids > 0]).tolist()) == set(range(1, n + 1))
    assert np.all((ids > 0) == land)          # every land cell in a basin, nothing outside


def test_all_china_basins_are_unchanged():
    cfg = load_config(None, grid="1", env={})
    b = synthetic_basins(cfg)
    assert len(b.attrs["flag_values"]) == 40
    np.testing.assert_array_equal(b.values, make_basins("1", n_basins=40, seed=0).values)
