"""Shared look of the atlas: colour maps, class colours, unit labels, figure metadata helpers.

Colour maps are perceptually uniform or colour-blind safe (ColorBrewer's diverging BrBG and RdBu,
viridis/cividis); diverging maps are centred on zero with a two-slope norm for quantities that
change sign; class colours are the Okabe–Ito palette.
"""
from __future__ import annotations

import re

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FLUX_CMAP = "BrBG"          # brown = source, green = sink (uptake by the land)
TREND_CMAP = "RdBu"         # red = decreasing, blue = increasing
SEQ_CMAP = "viridis"
SHARE_CMAP = "cividis"
PERCENTILES = (2.0, 98.0)   # colour limits of continuous maps: these percentiles of the mapped cells

# Okabe & Ito (2008) colour-blind safe palette
OKABE_ITO = {"blue": "#0072B2", "vermillion": "#D55E00", "orange": "#E69F00",
             "green": "#009E73", "sky": "#56B4E9", "yellow": "#F0E442",
             "purple": "#CC79A7", "black": "#000000", "grey": "#999999"}
FACTOR_COLORS = {"precipitation": OKABE_ITO["blue"], "temperature": OKABE_ITO["vermillion"],
                 "solar_radiation": OKABE_ITO["orange"], "human_activity": OKABE_ITO["green"]}
# change classes: ColorBrewer RdBu (colour-blind safe), stable in grey
CHANGE_COLORS = {"significant_decrease": "#b2182b", "slight_decrease": "#f4a582",
                 "stable": "#d9d9d9", "slight_increase": "#92c5de",
                 "significant_increase": "#2166ac"}
SERIES_COLORS = [OKABE_ITO[k] for k in ("blue", "vermillion", "green", "orange", "purple", "sky",
                                        "black", "yellow")]

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_CARBON = {"g m-2 yr-1": "t C km⁻² a⁻¹", "g m-2 yr-2": "t C km⁻² a⁻²",
           "g m-2 month-1": "g C m⁻² month⁻¹", "Tg": "Tg C a⁻¹", "mol L-1": "mol L⁻¹",
           "%": "%", "1": "1"}


def new_figure(figsize) -> Figure:
    """A Figure drawn by the non-interactive Agg canvas — no pyplot, no GUI backend, nothing
    changed in the process's matplotlib state (the atlas may run inside a notebook)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def pretty_units(units: str) -> str:
    """A UDUNITS string as printed on a figure: carbon fluxes in the project's t C km⁻² a⁻¹
    (= g C m⁻² a⁻¹), exponents as superscripts, yr as a."""
    units = str(units or "").strip()
    if units in _CARBON:
        return _CARBON[units]
    out = re.sub(r"\byr\b", "a", units)
    return re.sub(r"(?<=[A-Za-z)])(-?\d+)", lambda m: m.group(1).translate(_SUPERSCRIPT), out)


def label(name: str) -> str:
    """A category or variable name for people: solar_radiation → solar radiation."""
    return str(name).replace("_", " ")


def percentile_limits(values: np.ndarray, percentiles=PERCENTILES) -> tuple[float, float]:
    v = np.asarray(values, "f8")
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = (float(x) for x in np.percentile(v, percentiles))
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    return lo, hi


def ols_trend(x, y) -> dict:
    """OLS slope, intercept and two-sided p-value of y on x (NaN-free pairs)."""
    from scipy import stats

    x, y = np.asarray(x, "f8"), np.asarray(y, "f8")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return {"slope": float("nan"), "intercept": float("nan"), "p_value": float("nan")}
    r = stats.linregress(x[ok], y[ok])
    return {"slope": float(r.slope), "intercept": float(r.intercept), "p_value": float(r.pvalue)}


def floats(a) -> list:
    """A JSON-able list of floats (NaN → None)."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, "f8").ravel()]
