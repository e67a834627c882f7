"""The compiled forest predictor (carbonsink.kernels.forest) gives scikit-learn's predictions bit
for bit: random data, several forest shapes, values exactly on and around the split thresholds (in
float64 and after the float32 rounding sklearn applies), NaN, a hand-computed stump, and the
first-k-trees claim the CV forest size rests on. No timing here: benchmarks/bench_forest.py."""
import pickle

import numpy as np
import pytest
from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.tree import DecisionTreeRegressor

from carbonsink.kernels.forest import FlatForest, flatten_forest, predict_forest, predict_trees

pytestmark = pytest.mark.unit


def _same(a, b):
    """Bit-for-bit equal float arrays (NaN-free)."""
    a, b = np.asarray(a, dtype="f8"), np.asarray(b, dtype="f8")
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint64), b.view(np.uint64))


def _data(n=400, n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, n_features)) * [2000, 30, 800, 900][:n_features] \
        if n_features <= 4 else rng.normal(size=(n, n_features))
    y = np.sin(x[:, 0] / 300) + 0.1 * np.abs(x[:, 1]) ** 0.5 + 0.2 * rng.standard_normal(n)
    return x, y


def _edge_rows(rf, x, n_max=3000, seed=1):
    """Rows whose one feature sits exactly on, or one float32/float64 step around, a split
    threshold of the forest (float64 thresholds are midpoints of float32 values: often not
    float32-representable, so float32 rounding moves values across them)."""
    rng = np.random.default_rng(seed)
    rows = []
    for est in rf.estimators_ if hasattr(rf, "estimators_") else [rf]:
        t = est.tree_
        inner = np.flatnonzero(t.children_left != -1)
        for node in inner:
            f, thr = t.feature[node], t.threshold[node]
            t32 = np.float32(thr)
            for v in (thr, np.nextafter(thr, np.inf), np.nextafter(thr, -np.inf),
                      float(t32), float(np.nextafter(t32, np.float32(np.inf))),
                      float(np.nextafter(t32, np.float32(-np.inf)))):
                row = x[rng.integers(len(x))].copy()
                row[f] = v
                rows.append(row)
    rows = np.array(rows)
    return rows[rng.permutation(len(rows))[:n_max]] if len(rows) > n_max else rows


FORESTS = [
    dict(n_estimators=20, min_samples_leaf=1, max_features=1.0, random_state=0),
    dict(n_estimators=15, min_samples_leaf=5, max_depth=None, bootstrap=True, random_state=1),
    dict(n_estimators=10, min_samples_leaf=1, max_depth=4, bootstrap=False, max_features=0.5,
         random_state=2),
    dict(n_estimators=12, min_samples_leaf=3, max_depth=8, bootstrap=True, max_samples=0.5,
         random_state=3),
    dict(n_estimators=1, max_depth=2, random_state=4),
]


@pytest.mark.parametrize("params", FORESTS)
def test_equals_sklearn_on_random_and_edge_values(params):
    x, y = _data(seed=params["random_state"])
    rf = RandomForestRegressor(**params).fit(x, y)
    flat = flatten_forest(rf)
    assert flat.n_trees == params["n_estimators"] and flat.n_features == 4
    assert flat.n_nodes == sum(e.tree_.node_count for e in rf.estimators_)
    rng = np.random.default_rng(7)
    fresh = rng.uniform(-0.2, 1.2, (5000, 4)) * [2000, 30, 800, 900]   # also outside the range
    edges = _edge_rows(rf, x)
    for rows in (x, fresh, edges):
        _same(predict_forest(rows, flat), rf.predict(rows))
        r32 = rows.astype(np.float32)
        _same(predict_forest(r32, flat), rf.predict(r32))


def test_float32_rounding_is_sklearns():
    """A float64 value above a threshold that rounds down onto (or below) it in float32 goes
    left, as in sklearn; the same comparison made in float64 would send it right."""
    x, y = _data(seed=5)
    rf = RandomForestRegressor(n_estimators=5, random_state=0).fit(x, y)
    flat = flatten_forest(rf)
    t = rf.estimators_[0].tree_
    crossing = 0
    for node in np.flatnonzero(t.children_left != -1):
        thr = t.threshold[node]
        above = np.nextafter(thr, np.inf)
        if above > thr and np.float32(above) <= thr:          # float32 rounding crosses it
            row = x[:1].copy()
            row[0, t.feature[node]] = above
            _same(predict_forest(row, flat), rf.predict(row))
            crossing += 1
    assert crossing > 0          # the case is exercised: thresholds are mostly not float32 values


def test_nan_follows_missing_go_to_left():
    x, y = _data(n=600, seed=6)
    x_nan = x.copy()
    x_nan[::7, 0] = np.nan                      # learned: missing values go to a side per node
    x_nan[3::11, 2] = np.nan
    for xs in (x, x_nan):
        rf = RandomForestRegressor(n_estimators=10, random_state=0).fit(xs, y)
        flat = flatten_forest(rf)
        rows = _data(n=300, seed=9)[0]
        rows[::3, 0] = np.nan
        rows[1::4, 1] = np.nan
        rows[2::5, 2] = np.nan
        _same(predict_forest(rows, flat), rf.predict(rows))


def test_stump_by_hand():
    """A depth-1 tree on x = 0, 1, 2, 3 with y = 1, 1, 5, 7 splits at 1.5: 1 left, 6 right."""
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([1.0, 1.0, 5.0, 7.0])
    stump = DecisionTreeRegressor(max_depth=1).fit(x, y)
    assert stump.tree_.threshold[0] == 1.5
    flat = flatten_forest(stump)
    up32 = float(np.nextafter(np.float32(1.5), np.float32(9)))     # next float32 above 1.5
    up64 = np.nextafter(1.5, 9)              # above 1.5 in float64, 1.5 again in float32: left
    rows = np.array([[-5.0], [1.0], [1.5], [up64], [up32], [2.0], [1e30]])
    expected = [1, 1, 1, 1, 6, 6, 6]
    np.testing.assert_array_equal(predict_forest(rows, flat), expected)
    np.testing.assert_array_equal(stump.predict(rows), expected)
    # a forest of three identical stumps (no bootstrap): (6 + 6 + 6) / 3
    rf = RandomForestRegressor(n_estimators=3, max_depth=1, bootstrap=False,
                               random_state=0).fit(x, y)
    np.testing.assert_array_equal(predict_forest(rows, flatten_forest(rf)), expected)
    _same(predict_forest(rows, flatten_forest(rf)), rf.predict(rows))


def test_single_leaf_trees_and_empty_input():
    x = np.arange(20.0).reshape(10, 2)
    rf = RandomForestRegressor(n_estimators=4, random_state=0).fit(x, np.full(10, 0.25))
    flat = flatten_forest(rf)
    assert flat.n_nodes == 4                     # one leaf per tree
    _same(predict_forest(x, flat), rf.predict(x))
    assert predict_forest(np.empty((0, 2)), flat).shape == (0,)
    assert predict_trees(np.empty((0, 2)), flat).shape == (4, 0)


def test_other_forests_and_dtypes():
    x, y = _data(n=300, n_features=7, seed=8)
    et = ExtraTreesRegressor(n_estimators=8, random_state=0).fit(x, y)
    _same(predict_forest(x, flatten_forest(et)), et.predict(x))
    tree = DecisionTreeRegressor(random_state=0).fit(x, y)
    _same(predict_forest(x, flatten_forest(tree)), tree.predict(x))
    xi = np.rint(x * 10).astype(np.int64)        # integers: straight to float32, as sklearn
    rf = RandomForestRegressor(n_estimators=5, random_state=0).fit(xi, y)
    _same(predict_forest(xi, flatten_forest(rf)), rf.predict(xi))
    xf = np.asfortranarray(x)                    # any memory layout
    rf = RandomForestRegressor(n_estimators=5, random_state=0).fit(x, y)
    _same(predict_forest(xf, flatten_forest(rf)), rf.predict(x))


def test_per_tree_predictions_and_first_k_trees():
    """predict_trees row t is tree t's prediction; the running sum of the first k rows over k is
    the prediction of a k-tree forest with the same random_state (sklearn draws the trees' seeds
    in turn), bit for bit — what the CV forest size in carbonsink.ml relies on."""
    x, y = _data(n=500, seed=3)
    big = RandomForestRegressor(n_estimators=60, random_state=11).fit(x, y)
    rows = _data(n=800, seed=4)[0]
    per_tree = predict_trees(rows, flatten_forest(big))
    assert per_tree.shape == (60, 800)
    for t in (0, 17, 59):
        _same(per_tree[t], big.estimators_[t].predict(rows.astype(np.float32)))
    running = np.cumsum(per_tree, axis=0)
    for k in (1, 10, 25, 60):
        small = RandomForestRegressor(n_estimators=k, random_state=11).fit(x, y)
        for a, b in zip(small.estimators_, big.estimators_[:k]):
            assert a.random_state == b.random_state
            np.testing.assert_array_equal(a.tree_.threshold, b.tree_.threshold)
        _same(running[k - 1] / k, small.predict(rows))


def test_flat_forest_pickles_small():
    x, y = _data(seed=2)
    rf = RandomForestRegressor(n_estimators=30, random_state=0).fit(x, y)
    flat = flatten_forest(rf)
    back = pickle.loads(pickle.dumps(flat))
    assert isinstance(back, FlatForest) and back.n_trees == 30
    _same(predict_forest(x, back), rf.predict(x))
    assert flat.nbytes == 20 * flat.n_nodes + 8 * flat.n_trees
    assert len(pickle.dumps(flat)) < 0.5 * len(pickle.dumps(rf))


def test_refuses_what_it_cannot_reproduce():
    x, y = _data(n=100, seed=0)
    with pytest.raises(TypeError, match="RandomForestClassifier"):
        flatten_forest(RandomForestClassifier(n_estimators=2).fit(x, y > np.median(y)))
    with pytest.raises(TypeError, match="GradientBoostingRegressor.*not a plain mean"):
        flatten_forest(GradientBoostingRegressor(n_estimators=2).fit(x, y))
    with pytest.raises(ValueError, match="single-output regression only.*2 outputs"):
        flatten_forest(RandomForestRegressor(n_estimators=2).fit(x, np.c_[y, y]))
    with pytest.raises(ValueError, match="not fitted"):
        flatten_forest(RandomForestRegressor())
    flat = flatten_forest(RandomForestRegressor(n_estimators=2).fit(x, y))
    with pytest.raises(ValueError, match="3 features, the forest was fitted on 4"):
        predict_forest(x[:, :3], flat)
    with pytest.raises(ValueError, match="2-D"):
        predict_forest(x[0], flat)
