"""The zonal-sum kernel: by hand and against pandas' groupby."""
import numpy as np
import pandas as pd
import pytest

from carbonsink.kernels.zonal import group_sums


def test_group_sums_by_hand():
    flux = np.array([[1.0, 2.0, np.nan, 4.0]])
    area = np.array([10.0, 20.0, 30.0, 40.0])
    lab = np.array([0, 1, 1, -1])
    out = group_sums(flux, area, [lab, np.zeros(4, int)], [2, 1])
    # group 0: 1·10; group 1: 2·20 (the NaN cell counts neither flux nor area); cell 3 in none
    np.testing.assert_array_equal(out[0, 0], [10.0, 40.0, 1 * 10 + 2 * 20 + 4 * 40])
    np.testing.assert_array_equal(out[0, 1], [10.0, 20.0, 70.0])


def test_group_sums_equal_pandas_groupby():
    rng = np.random.default_rng(3)
    v, t, p = 3, 4, 5000
    flux = rng.normal(size=(v, t, p))
    flux[rng.random(flux.shape) < 0.2] = np.nan
    area = rng.uniform(1, 2, p)
    labs = [rng.integers(-1, 7, p), rng.integers(0, 3, p)]
    out = group_sums(flux, area, labs, [7, 3])
    assert out.shape == (v, t, 2, 10)
    for i in range(v):
        for j in range(t):
            df = pd.DataFrame({"w": flux[i, j] * area, "a": np.where(np.isnan(flux[i, j]),
                                                                      np.nan, area)})
            off = 0
            for lab, n in zip(labs, [7, 3]):
                g = df[lab >= 0].groupby(lab[lab >= 0]).sum(min_count=0)  # NaN-skipping
                g = g.reindex(range(n), fill_value=0.0)
                np.testing.assert_allclose(out[i, j, 0, off:off + n], g["w"], rtol=1e-12)
                np.testing.assert_allclose(out[i, j, 1, off:off + n], g["a"], rtol=1e-12)
                off += n


def test_group_sums_rejects_bad_labels_and_shapes():
    with pytest.raises(ValueError, match="groups"):
        group_sums(np.ones((1, 3)), np.ones(3), [np.array([0, 1, 2])], [2])
    with pytest.raises(ValueError, match="area"):
        group_sums(np.ones((1, 3)), np.ones(2), [np.zeros(3, int)], [1])
