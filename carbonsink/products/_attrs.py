"""Dataset-level CF attributes shared by every product."""
from __future__ import annotations

import datetime as _dt

import xarray as xr

from .. import __version__

_GRID_KEYS = ("grid", "grid_resolution_deg", "grid_bbox", "crs", "domain", "domain_name",
              "domain_source", "domain_area_km2")


def product_attrs(inputs: xr.Dataset, *, title: str, extra: dict | None = None) -> dict:
    """Conventions, history, source, version and grid; inputs' provenance carried forward."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs = {
        "title": title,
        "Conventions": "CF-1.10",
        "institution": "carbonsink",
        "source": f"carbonsink {__version__}",
        "carbonsink_version": __version__,
        "history": f"{now} {title} computed by carbonsink {__version__}",
        "input_source": str(inputs.attrs.get("source", "")),
        "geospatial_lat_units": "degrees_north", "geospatial_lon_units": "degrees_east",
    }
    for key in _GRID_KEYS:
        if key in inputs.attrs:
            attrs[key] = inputs.attrs[key]
    if "run_config_hash" in inputs.attrs:
        attrs["run_config_hash"] = inputs.attrs["run_config_hash"]
    attrs.update(extra or {})
    return attrs
