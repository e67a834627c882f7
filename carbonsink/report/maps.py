"""Map figures of the atlas: continuous fields (with significance stippling), class maps and panels.

Every function takes :class:`~carbonsink.report.fields.MapField` s already computed and a
:class:`~carbonsink.report.basemap.Basemap`, and returns ``(figure, meta)``: a matplotlib Figure
(Agg, no pyplot state) and what was drawn — colour limits and the percentiles they came from, the
norm, the units on the colour bar, the class shares of a class map — which the atlas writes to its
figure manifest so the figures can be checked against the products.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize, TwoSlopeNorm
from matplotlib.patches import Patch

from . import basemap as bmod
from .style import (
    FLUX_CMAP,
    PERCENTILES,
    SEQ_CMAP,
    SHARE_CMAP,
    floats,
    label,
    new_figure,
    percentile_limits,
    pretty_units,
)

WIDTH = 7.2            # inches: one column of a page, two of a journal
STIPPLE_DOTS = 150     # at most this many significance dots along the longer side


def _layout(bm: bmod.Basemap, nrows=1, ncols=1, *, width=WIDTH, top=0.45, bottom=0.95,
            left=0.5, right=0.15, gap_x=0.45, gap_y=0.55):
    pw = (width - left - right - gap_x * (ncols - 1)) / ncols
    ph = pw * bm.aspect
    height = top + nrows * ph + (nrows - 1) * gap_y + bottom
    fig = new_figure((width, height))
    rects = []
    for r in range(nrows):
        for c in range(ncols):
            x = left + c * (pw + gap_x)
            y = height - top - (r + 1) * ph - r * gap_y
            rects.append([x / width, y / height, pw / width, ph / height])
    return fig, rects, height


def _norm(lo, hi, diverging: bool):
    """A zero-centred two-slope norm for quantities that change sign (limits widened to include
    zero on the side the data do not reach), else a linear norm."""
    if diverging:
        if lo < 0.0 < hi:
            return TwoSlopeNorm(0.0, lo, hi)
        m = max(abs(lo), abs(hi))
        return TwoSlopeNorm(0.0, -m, m)
    return Normalize(lo, hi)


def _extend(values, norm) -> str:
    v = np.asarray(values, "f8")
    v = v[np.isfinite(v)]
    low, high = bool((v < norm.vmin).any()), bool((v > norm.vmax).any())
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (low, high), "neither")


def _colorbar(fig, mappable, height, label_text, extend, rect=None):
    cax = fig.add_axes(rect or [0.2, 0.42 / height, 0.6, 0.13 / height])
    cb = fig.colorbar(mappable, cax=cax, orientation="horizontal", extend=extend)
    cb.set_label(label_text, fontsize=9)
    cb.ax.tick_params(labelsize=8)
    return cb


def _stipple(ax, bm, sig, threshold=0.5):
    """Dots where at least ``threshold`` of a block's area is significant; blocks of the
    significance fraction map so that at most :data:`STIPPLE_DOTS` dots run along a side."""
    frac, area = np.asarray(sig.values, "f8"), np.asarray(sig.area, "f8")
    ny, nx = frac.shape
    s = max(1, math.ceil(max(ny, nx) / STIPPLE_DOTS))
    pad = ((0, (-ny) % s), (0, (-nx) % s))
    w = np.pad(np.where(np.isfinite(frac), area, 0.0), pad)
    f = np.pad(np.where(np.isfinite(frac), frac, 0.0), pad)
    by, bx = w.shape[0] // s, w.shape[1] // s
    num = (f * w).reshape(by, s, bx, s).sum(axis=(1, 3))
    den = w.reshape(by, s, bx, s).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        block = np.where(den > 0, num / den, np.nan)
    lat_c = 0.5 * (sig.lat_edges[:-1] + sig.lat_edges[1:])
    lon_c = 0.5 * (sig.lon_edges[:-1] + sig.lon_edges[1:])
    lat_b = np.pad(lat_c, (0, pad[0][1]), mode="edge").reshape(by, s).mean(axis=1)
    lon_b = np.pad(lon_c, (0, pad[1][1]), mode="edge").reshape(bx, s).mean(axis=1)
    iy, ix = np.nonzero(block >= threshold)
    x, y = bmod.project(bm.projection, lon_b[ix], lat_b[iy])
    # dot diameter: ~half the spacing of the blocks on the page (points); a white rim keeps the
    # dots visible on the darkest colours, where significant trends are
    spacing = ax.get_position().width * ax.figure.get_figwidth() * 72.0 / max(bx, 1)
    size = float(np.clip((spacing / 2.2) ** 2, 1.5, 12.0))
    ax.scatter(x, y, s=size, c="black", marker="o", edgecolors="white", linewidths=0.25,
               zorder=3)
    total = np.nansum(np.where(np.isfinite(frac), area, 0.0))
    share = 100.0 * np.nansum(np.where(np.isfinite(frac), frac * area, 0.0)) / total \
        if total > 0 else float("nan")
    return {"dots": int(iy.size), "block_cells": s, "threshold": threshold,
            "significant_area_pct": float(share)}


def _frame(bm: bmod.Basemap, inset) -> dict:
    """What frames a map: the boundary layers drawn, whose outline, the inset."""
    return {"domain": bm.domain, "boundaries": sorted(bmod.boundary_paths(bm)),
            "outline": "China" if bm.is_china else bm.label,
            "south_china_sea_inset": inset is not None, "projection": bm.projection}


def continuous_map(bm: bmod.Basemap, field, *, title: str, quantity: str, cmap=None,
                   diverging: bool = False, percentiles=PERCENTILES, vlim=None,
                   stipple=None, stipple_label: str = "p < 0.05"):
    """One map of a continuous field; colour limits are the ``percentiles`` of the mapped cells
    (or ``vlim``); ``diverging``: centred on zero (fluxes and trends, which change sign).
    ``stipple``: a significance-fraction MapField dotted where most of a block is significant."""
    lo, hi = vlim if vlim is not None else percentile_limits(field.valid(), percentiles)
    norm = _norm(lo, hi, diverging)
    cmap = cmap or (FLUX_CMAP if diverging else SEQ_CMAP)
    fig, rects, height = _layout(bm)
    ax = bmod.map_axes(fig, rects[0], bm)
    mesh = bmod.draw_field(ax, bm, field, cmap=cmap, norm=norm)
    ax.set_title(title, fontsize=10)
    meta = {"type": "map", "cmap": cmap, "norm": type(norm).__name__,
            "vmin": float(norm.vmin), "vmax": float(norm.vmax),
            "vcenter": float(norm.vcenter) if isinstance(norm, TwoSlopeNorm) else None,
            "limits_from": None if vlim is not None else
            {"percentiles": list(percentiles), "values": [float(lo), float(hi)]},
            "coarsen_factor": field.factor, "source_res_deg": field.source_res,
            "shape": list(field.shape), "cells_with_data": int(field.valid().size),
            "field_min": float(np.nanmin(field.values)) if field.valid().size else None,
            "field_max": float(np.nanmax(field.values)) if field.valid().size else None}
    if stipple is not None:
        meta["stipple"] = _stipple(ax, bm, stipple)
        ax.text(0.01, 0.01, f"dots: {stipple_label}", transform=ax.transAxes, fontsize=7,
                zorder=7)
    inset = bmod.scs_inset(fig, ax, bm, field, cmap=cmap, norm=norm)
    units = pretty_units(field.units)
    cb = _colorbar(fig, mesh, height, f"{quantity} ({units})", _extend(field.values, norm))
    meta.update(units=units, colorbar_label=cb.ax.get_xlabel(), **_frame(bm, inset))
    return fig, meta


def class_map(bm: bmod.Basemap, field, *, title: str, colors: dict[str, str], legend_title: str):
    """A class map (codes → names in ``field.categories``) with a legend of each class's share of
    the mapped area."""
    codes = sorted(field.categories)
    names = [field.categories[c] for c in codes]
    cmap = ListedColormap([colors.get(n, "#999999") for n in names])
    norm = BoundaryNorm([c - 0.5 for c in codes] + [codes[-1] + 0.5], len(codes))
    values = np.asarray(field.values)
    area = np.asarray(field.area, "f8")
    total = area[values > 0].sum()
    shares = {n: float(100.0 * area[values == c].sum() / total) if total > 0 else float("nan")
              for c, n in zip(codes, names)}
    fig, rects, _ = _layout(bm, bottom=1.05)
    ax = bmod.map_axes(fig, rects[0], bm)
    bmod.draw_field(ax, bm, field, cmap=cmap, norm=norm)
    inset = bmod.scs_inset(fig, ax, bm, field, cmap=cmap, norm=norm)
    ax.set_title(title, fontsize=10)
    handles = [Patch(facecolor=colors.get(n, "#999999"), edgecolor="0.3", linewidth=0.4,
                     label=f"{label(n)} ({shares[n]:.1f} %)") for n in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(3, len(handles)), fontsize=8,
               title=f"{legend_title} (share of the mapped area)", title_fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 0.02))
    meta = {"type": "class_map", "classes": names, "colors": [colors.get(n) for n in names],
            "area_share_pct": shares, "coarsen_factor": field.factor,
            "source_res_deg": field.source_res, "shape": list(field.shape), **_frame(bm, inset)}
    return fig, meta


def panel_maps(bm: bmod.Basemap, fields: dict, *, title: str, quantity: str, ncols: int = 2,
               cmap=None, diverging: bool = False, vlim=None, percentiles=PERCENTILES):
    """Small multiples of continuous fields on one colour scale (``vlim``, or the
    ``percentiles`` of all panels' cells together)."""
    names = list(fields)
    nrows = math.ceil(len(names) / ncols)
    if vlim is None:
        lo, hi = percentile_limits(np.concatenate([f.valid() for f in fields.values()]),
                                   percentiles)
    else:
        lo, hi = vlim
    norm = _norm(lo, hi, diverging)
    cmap = cmap or (FLUX_CMAP if diverging else SEQ_CMAP)
    fig, rects, height = _layout(bm, nrows, ncols, top=0.6, bottom=0.9)
    mesh = None
    panels = {}
    for name, rect in zip(names, rects):
        f = fields[name]
        ax = bmod.map_axes(fig, rect, bm, labels=False, coarse=True)
        mesh = bmod.draw_field(ax, bm, f, cmap=cmap, norm=norm)
        ax.set_title(name, fontsize=9)
        inset = bmod.scs_inset(fig, ax, bm, f, cmap=cmap, norm=norm)
        v, a = np.asarray(f.values, "f8"), np.asarray(f.area, "f8")
        ok = np.isfinite(v)
        panels[name] = {"area_mean": float((v[ok] * a[ok]).sum() / a[ok].sum())
                        if ok.any() else None, "cells_with_data": int(ok.sum())}
    fig.suptitle(title, fontsize=10, y=1.0 - 0.12 / height)
    units = pretty_units(next(iter(fields.values())).units)
    allv = np.concatenate([np.asarray(f.values, "f8").ravel() for f in fields.values()])
    cb = _colorbar(fig, mesh, height, f"{quantity} ({units})", _extend(allv, norm))
    meta = {"type": "panel_maps", "panels": panels, "cmap": cmap, "norm": type(norm).__name__,
            "vmin": float(norm.vmin), "vmax": float(norm.vmax),
            "limits_from": None if vlim is not None else
            {"percentiles": list(percentiles), "values": floats([lo, hi])},
            "units": units, "colorbar_label": cb.ax.get_xlabel(),
            "coarsen_factor": next(iter(fields.values())).factor, **_frame(bm, inset)}
    return fig, meta


def shares_maps(bm: bmod.Basemap, fields: dict, *, title: str):
    """The relative contributions (%) of the drivers and human activity, on one 0–100 % scale."""
    return panel_maps(bm, fields, title=title, quantity="relative contribution", ncols=2,
                      cmap=SHARE_CMAP, vlim=(0.0, 100.0))
