"""Terrain derivatives on a regular lat/lon grid. Pure NumPy, no I/O, no xarray."""
from __future__ import annotations

import numpy as np

__all__ = ["slope_deg"]


def slope_deg(z, dy_m, dx_m) -> np.ndarray:
    """Slope (degrees) of a surface ``z`` (rows, cols; metres) by centred differences,
    one-sided at the array's edges (``np.gradient``): atan(√((∂z/∂y)² + (∂z/∂x)²)).

    ``dy_m``: the row spacing in metres (scalar); ``dx_m``: the column spacing in metres, a
    scalar or one value per row (on a lat/lon grid it shrinks with cos(lat)). A NaN neighbour
    makes the slope NaN (the coast has no slope on land). A single row or column has no slope
    along it (0)."""
    z = np.asarray(z, dtype="f8")
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (rows, cols), got shape {z.shape}")
    dx = np.broadcast_to(np.asarray(dx_m, dtype="f8").reshape(-1, 1) if np.ndim(dx_m)
                         else np.asarray(dx_m, dtype="f8"), z.shape)
    gy = np.gradient(z, axis=0) / float(dy_m) if z.shape[0] > 1 else np.zeros_like(z)
    gx = np.gradient(z, axis=1) / dx if z.shape[1] > 1 else np.zeros_like(z)
    return np.degrees(np.arctan(np.hypot(gx, gy)))
