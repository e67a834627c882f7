"""The atlas of a run: one self-contained HTML page of maps, time series, pies, bars, tables and
provenance, plus every figure as PNG and SVG — drawn from *published* products only, so it can be
rebuilt from any store (local or S3) without recomputing anything.

:func:`build_report` ``(store, out_dir, *, prefix="", client=None)`` writes::

    out_dir/index.html        the atlas (figures embedded; opens offline from a file)
    out_dir/figures/<id>.png  each figure, 120 dpi
    out_dir/figures/<id>.svg  each figure as vector graphics (map rasters embedded)
    out_dir/figures.json      the figure manifest: what each figure draws (colour limits and the
                              percentiles they come from, line data, wedge shares, …)
    out_dir/tables/*.csv      the tables shown

Modules: :mod:`~.contents` (what the store holds for a run, provenance), :mod:`~.fields`
(area-weighted coarsening, computed lazily with dask), :mod:`~.basemap` (projection, cnmaps
boundaries, South China Sea inset; nothing from the internet), :mod:`~.maps`, :mod:`~.charts` and
:mod:`~.comparison` (figure functions returning ``(figure, meta)``), :mod:`~.page` (HTML) and
:mod:`~.build`.
"""
from .build import build_report
from .charts import category_areas, random_forest, regional_bars, totals_timeseries
from .comparison import annual_totals, seasonal_cycle, taylor_diagram, zonal_means
from .contents import ReportError, discover
from .maps import class_map, continuous_map, panel_maps, shares_maps

__all__ = [
           "ReportError",
           "annual_totals",
           "build_report",
           "category_areas",
           "class_map",
           "continuous_map",
           "discover",
           "panel_maps",
           "random_forest",
           "regional_bars",
           "seasonal_cycle",
           "shares_maps",
           "taylor_diagram",
           "totals_timeseries",
           "zonal_means",
]
