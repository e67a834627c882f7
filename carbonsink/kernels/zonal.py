"""Zonal sums of area-weighted fluxes per group (SCIENCE.md §0, §4). NumPy, no I/O.

One pass over a block of cells gives, for every leading row (variable × year) and every group of
several label maps at once, Σ F·A and the valid area Σ A over the cells where F is finite: the
sufficient statistics of the area-weighted mean and of the total, summed over blocks by the caller.
"""
from __future__ import annotations

import numpy as np

__all__ = ["group_sums"]


def group_sums(flux, area, labels, n_groups) -> np.ndarray:
    """Per row of ``flux`` and per group: Σ F·A and Σ A over the valid cells.

    ``flux`` (..., P) values of P cells (NaN: not valid); ``area`` (P,) cell areas; ``labels`` a
    sequence of (P,) integer label maps, group index 0..n−1 or −1 for cells in no group;
    ``n_groups`` the number of groups of each map. Returns (..., 2, Σ n_groups) float64: index 0 of
    the second-to-last axis the sums of F·A, index 1 the valid areas, the groups of the maps one
    after the other.
    """
    f = np.asarray(flux)
    lead = f.shape[:-1]
    p = f.shape[-1]
    area = np.asarray(area, "f8").reshape(-1)
    if area.size != p:
        raise ValueError(f"area has {area.size} cells, flux {p}")
    f = f.reshape(-1, p)
    rows = f.shape[0]
    ok = np.isfinite(f)
    w = np.where(ok, f * area, 0.0)
    a = np.where(ok, area, 0.0)
    total = int(sum(n_groups))
    out = np.zeros((rows, 2, total))
    off = 0
    for lab, n in zip(labels, n_groups):
        lab = np.asarray(lab).reshape(-1)
        if lab.size != p:
            raise ValueError(f"a label map has {lab.size} cells, flux {p}")
        if np.any(lab >= n):
            raise ValueError(f"a label is ≥ its number of groups {n}")
        sel = lab >= 0
        ll = lab[sel].astype(np.int64)
        idx = (np.arange(rows, dtype=np.int64)[:, None] * n + ll[None, :]).ravel()
        for k, x in enumerate((w, a)):
            xs = x if sel.all() else x[:, sel]
            out[:, k, off:off + n] = np.bincount(idx, weights=xs.ravel(),
                                                 minlength=rows * n).reshape(rows, n)
        off += n
    return out.reshape(lead + (2, total))
