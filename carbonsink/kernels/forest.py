"""A compiled predictor for fitted scikit-learn regression forests (SCIENCE.md §3). NumPy/Numba.

:func:`flatten_forest` packs the trees of a fitted ``RandomForestRegressor`` (or
``ExtraTreesRegressor``, or one ``DecisionTreeRegressor``) into a :class:`FlatForest`: the nodes of
every tree concatenated into three contiguous arrays (an integer code holding the children and the
split feature, the threshold, the value) with one root offset per tree. :func:`predict_forest`
walks it in one ``numba`` loop (compiled once, cached on disk, releasing the GIL) and returns **the
same float64 numbers as the forest's ``predict``, bit for bit**, because it does what scikit-learn
does:

* X is rounded to float32 first (scikit-learn validates X with ``dtype=np.float32``) and a split
  sends a sample left when that float32 value, widened to float64, is ``<=`` the float64 threshold.
  A float64 x just above a threshold can round down onto it and go left, as in sklearn.
* NaN goes to the side the node learned for missing values (``missing_go_to_left``).
* A sample's prediction is its leaf values of the trees added in tree order starting from 0.0, then
  divided by the number of trees: sklearn's ``y_hat += tree.predict(X)`` per tree followed by
  ``y_hat /= len(estimators_)`` (with the default ``n_jobs=None``: one job, trees in order).

The layout is rearranged for speed without changing any decision:

* Each tree's nodes are renumbered breadth-first so that the two children of a node are adjacent:
  the next node is ``child + (x > threshold)``, no unpredictable branch.
* A leaf points to itself with threshold +inf, so a step from a leaf stays there.
* Thresholds are stored as float32: the largest float32 ≤ sklearn's float64 threshold. For a
  float32 x, ``x <= t`` ⇔ ``x <= that float32`` exactly, so this is the same comparison in half the
  bytes.
* Samples are walked in blocks of 512 through one tree at a time, level by level, keeping a
  compacted list of the samples not yet at a leaf. Many independent walks are in flight at once
  instead of one mispredicted branch per node.

On the demo forest that is 2–2.3× the rows per second of sklearn's predict on one thread
(``benchmarks/bench_forest.py``).

:func:`predict_trees` returns every tree's own prediction (n_trees, n). Its running mean over the
first k trees is the prediction of a k-tree forest with the same ``random_state``, which is how the
forest size is chosen by cross-validation without refitting (:func:`carbonsink.ml.
train_ionic_strength`).

Single-output regression only. Classifiers, multi-output forests and boosted ensembles (whose
prediction is not a mean of trees) are refused with a clear error. X is not checked for infinite
values (sklearn raises): they are compared like any other value.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numba import njit

__all__ = ["FlatForest", "flatten_forest", "predict_forest", "predict_trees"]

_LEAF = -1          # sklearn's TREE_LEAF child index
_BLOCK = 512        # samples walked together through one tree before the next
_U = np.uint64
_CHILD_SHIFT = _U(32)
_FEATURE_MASK = _U(0xFFFFFFFF)
_ONE = _U(1)


@dataclass(frozen=True, eq=False)
class FlatForest:
    """The nodes of all trees of a fitted forest, concatenated (n_nodes = Σ tree node counts).

    Node ids are global; ``roots[t]`` is tree t's root. ``code[i]`` packs three things:
    ``child << 32 | feature << 1 | nan_goes_right``. The left child is ``child``, the right child
    ``child + 1``; at a leaf, ``child`` is the node itself. ``threshold`` is float32 (the largest
    float32 ≤ sklearn's threshold, +inf at leaves). ``value`` is each node's mean target (only leaf
    values are read). 20 bytes per node, picklable. A frozen dataclass, not a tuple, so dask
    treats it as one opaque object (a tuple in a dask graph is read as a task).
    """

    code: np.ndarray           # uint64 (n_nodes,)
    threshold: np.ndarray      # float32 (n_nodes,): go right when float32(x) > threshold
    value: np.ndarray          # float64 (n_nodes,)
    roots: np.ndarray          # uint64 (n_trees,)
    n_features: int

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.value.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(self)
                   if isinstance(getattr(self, f.name), np.ndarray))


def _trees_of(regressor) -> list:
    """The fitted trees whose plain mean is ``regressor.predict``; a clear error otherwise."""
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
    from sklearn.tree import DecisionTreeRegressor

    name = type(regressor).__name__
    if isinstance(regressor, (RandomForestRegressor, ExtraTreesRegressor)):
        trees = getattr(regressor, "estimators_", None)
        if not trees:
            raise ValueError(f"{name} is not fitted (no estimators_)")
    elif isinstance(regressor, DecisionTreeRegressor):
        if not hasattr(regressor, "tree_"):
            raise ValueError(f"{name} is not fitted (no tree_)")
        trees = [regressor]
    else:
        raise TypeError(f"flatten_forest handles single-output RandomForestRegressor, "
                        f"ExtraTreesRegressor or DecisionTreeRegressor, not {name}: its "
                        "prediction is not a plain mean of regression trees")
    n_outputs = int(getattr(regressor, "n_outputs_", 1))
    if n_outputs != 1:
        raise ValueError(f"flatten_forest handles single-output regression only; this {name} has "
                         f"{n_outputs} outputs")
    for t in trees:
        if t.tree_.value.shape[1:] != (1, 1):
            raise ValueError(f"flatten_forest handles single-output regression only; a tree of "
                             f"this {name} has node values of shape {t.tree_.value.shape[1:]}")
    return list(trees)


def _breadth_first(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Old node ids in breadth-first order, the two children of every node next to each other."""
    levels = [np.zeros(1, dtype=np.int64)]
    while True:
        frontier = levels[-1]
        inner = frontier[left[frontier] != _LEAF]
        if not inner.size:
            break
        levels.append(np.stack([left[inner], right[inner]], axis=1).ravel())
    order = np.concatenate(levels)
    if order.size != left.size:
        raise ValueError(f"tree has {left.size} nodes, {order.size} reachable from its root")
    return order


def _float32_floor(t: np.ndarray) -> np.ndarray:
    """The largest float32 ≤ t (float64): float32(x) <= t ⇔ float32(x) <= _float32_floor(t)."""
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    above = t32.astype(np.float64) > t
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _flatten_tree(tree, offset: int):
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    order = _breadth_first(left, right)
    n = order.size
    new_id = np.empty(n, dtype=np.int64)
    new_id[order] = np.arange(n)
    old_left, old_right = left[order], right[order]
    leaf = old_left == _LEAF
    child = np.where(leaf, np.arange(n), new_id[np.where(leaf, 0, old_left)])
    assert np.array_equal(child[~leaf] + 1, new_id[old_right[~leaf]])
    feature = np.where(leaf, 0, np.asarray(tree.feature, dtype=np.int64)[order])
    nan_right = ~leaf & (np.asarray(tree.missing_go_to_left)[order] == 0)
    code = ((child + offset).astype(_U) << _CHILD_SHIFT) | (feature.astype(_U) << _ONE) \
        | nan_right.astype(_U)
    threshold = np.where(leaf, np.float32(np.inf),
                         _float32_floor(np.asarray(tree.threshold, dtype=np.float64)[order]))
    return code, threshold.astype(np.float32), tree.value[order, 0, 0].astype(np.float64)


def flatten_forest(regressor) -> FlatForest:
    """Pack a fitted single-output regression forest into a :class:`FlatForest` (module doc)."""
    trees = [t.tree_ for t in _trees_of(regressor)]
    counts = np.array([t.node_count for t in trees], dtype=np.int64)
    n_features = int(trees[0].n_features)
    if counts.sum() >= 2 ** 32 or n_features >= 2 ** 31:
        raise ValueError(f"forest too large to flatten: {int(counts.sum())} nodes, "
                         f"{n_features} features")
    roots = np.zeros(len(trees), dtype=np.int64)
    roots[1:] = np.cumsum(counts)[:-1]
    parts = [_flatten_tree(t, int(o)) for t, o in zip(trees, roots)]
    return FlatForest(code=np.concatenate([p[0] for p in parts]),
                      threshold=np.concatenate([p[1] for p in parts]),
                      value=np.concatenate([p[2] for p in parts]),
                      roots=roots.astype(_U), n_features=n_features)


# --------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def _walk(xb, m, root, code, threshold, nodes, active):
    """Leave in ``nodes[:m]`` the leaf of one tree (root ``root``) reached by each row of ``xb``.

    Level-synchronous: every step moves each row not yet at a leaf one level down, branch-free,
    and compacts the list of such rows (a leaf points to itself, so it is recognised by its code).
    """
    for j in range(m):
        nodes[j] = root
        active[j] = j
    n_active = m
    while n_active > 0:
        k = 0
        for a in range(n_active):
            j = active[a]
            node = nodes[j]
            c = code[node]
            v = xb[j, (c & _FEATURE_MASK) >> _ONE]
            right = (v > threshold[node]) | ((v != v) & ((c & _ONE) != 0))
            nxt = (c >> _CHILD_SHIFT) + _U(right)
            nodes[j] = nxt
            active[k] = j
            k += (code[nxt] >> _CHILD_SHIFT) != nxt
        n_active = k


@njit(cache=True, nogil=True, error_model="numpy")
def _forest_loop(x, code, threshold, value, roots, mean, out):
    """mean: out[i] = Σ_t value[leaf_t(i)] / n_trees (tree order); else out[t, i] = value."""
    n, n_features = x.shape
    n_trees = roots.shape[0]
    nodes = np.empty(_BLOCK, dtype=np.uint64)
    active = np.empty(_BLOCK, dtype=np.uint64)
    acc = np.empty(_BLOCK, dtype=np.float64)
    xb = np.empty((_BLOCK, n_features), dtype=np.float32)
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        for j in range(m):
            acc[j] = 0.0
            for f in range(n_features):
                xb[j, f] = np.float32(x[start + j, f])      # sklearn predicts on float32 X
        for t in range(n_trees):
            _walk(xb, m, roots[t], code, threshold, nodes, active)
            if mean:
                for j in range(m):
                    acc[j] += value[nodes[j]]
            else:
                for j in range(m):
                    out[t, start + j] = value[nodes[j]]
        if mean:
            for j in range(m):
                out[0, start + j] = acc[j] / n_trees


def _as_rows(x, flat: FlatForest) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n_samples, n_features), got shape {x.shape}")
    if x.shape[1] != flat.n_features:
        raise ValueError(f"x has {x.shape[1]} features, the forest was fitted on "
                         f"{flat.n_features}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)                     # as sklearn: straight to float32
    return np.ascontiguousarray(x)


def predict_forest(x, flat: FlatForest) -> np.ndarray:
    """The forest's prediction for rows ``x`` (n, n_features), float64 (n,): equal to
    ``regressor.predict(x)`` bit for bit. float32 and float64 ``x`` are read as they are (rounded
    to float32 block by block, no copy of ``x``); other dtypes are cast to float32 first."""
    x = _as_rows(x, flat)
    out = np.empty((1, x.shape[0]), dtype=np.float64)
    if x.shape[0]:
        _forest_loop(x, flat.code, flat.threshold, flat.value, flat.roots, True, out)
    return out[0]


def predict_trees(x, flat: FlatForest) -> np.ndarray:
    """Every tree's prediction, float64 (n_trees, n): row t equals ``estimators_[t].predict(x)``.
    ``np.cumsum(p, axis=0)[k - 1] / k`` is then the prediction of the first k trees, bit for bit
    (cumsum adds in order, as the forest does)."""
    x = _as_rows(x, flat)
    out = np.empty((flat.n_trees, x.shape[0]), dtype=np.float64)
    if x.shape[0]:
        _forest_loop(x, flat.code, flat.threshold, flat.value, flat.roots, False, out)
    return out
