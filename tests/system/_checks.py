"""Assertions shared by the system tests."""
from __future__ import annotations

import numpy as np
import xarray as xr


def assert_identical_values(a: xr.Dataset, b: xr.Dataset):
    """Same variables, sizes, dtypes and values (NaNs in the same places count equal)."""
    assert set(a.data_vars) == set(b.data_vars)
    assert dict(a.sizes) == dict(b.sizes)
    for name in list(a.coords) + list(a.data_vars):
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
