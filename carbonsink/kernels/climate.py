"""Annual climate from monthly series — the aggregation every annual model shares. Pure NumPy."""
from __future__ import annotations

import numpy as np


def annual_from_monthly(values, how: str, days=None) -> np.ndarray:
    """(..., 12·nyears) monthly values, time last → (..., nyears).

    how="sum": annual total of monthly amounts (precipitation). how="mean": annual mean of monthly
    means, weighted by the days in each month when ``days`` (12·nyears,) is given (a January counts
    31/365 of the year, a February 28 or 29/366).
    """
    values = np.asarray(values, dtype="f8")
    n = values.shape[-1]
    if n == 0 or n % 12:
        raise ValueError(f"monthly series of {n} steps is not a whole number of years")
    shaped = values.reshape(values.shape[:-1] + (n // 12, 12))
    if how == "sum":
        return shaped.sum(axis=-1)
    if how == "mean":
        if days is None:
            return shaped.mean(axis=-1)
        w = np.asarray(days, dtype="f8").reshape(n // 12, 12)
        return (shaped * w).sum(axis=-1) / w.sum(axis=-1)
    raise ValueError(f"how must be 'sum' or 'mean', got {how!r}")
