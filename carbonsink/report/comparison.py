"""Charts of the bottom-up vs top-down comparison (``carbonsink compare``, SCIENCE.md §8): annual
totals, mean seasonal cycles, zonal means by latitude × month and a Taylor diagram, all from the
``<prefix>summary`` tables. Each returns ``(figure, meta)`` like :mod:`carbonsink.report.charts`.

A product's main series is its own (``member`` empty) or, for an ensemble, the ensemble mean; the
members are drawn as a min–max band (totals, seasonal cycle) or grey points (Taylor diagram).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm

from .style import FLUX_CMAP, SERIES_COLORS, floats, new_figure, percentile_limits

WIDTH = 7.2
ENSEMBLE_MEAN = "ensemble_mean"
DOMAIN = "domain"


def _clean(table: pd.DataFrame) -> pd.DataFrame:
    t = table.copy()
    if "member" in t:
        t["member"] = t["member"].fillna("").astype(str)
    return t


def main_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The main series of every product (its own, or its ensemble mean)."""
    t = _clean(table)
    has_mean = set(t.loc[t.member == ENSEMBLE_MEAN, "product"])
    keep = np.where(t["product"].isin(has_mean), t.member == ENSEMBLE_MEAN, t.member == "")
    return t[keep]


def _member_rows(table: pd.DataFrame) -> pd.DataFrame:
    t = _clean(table)
    return t[(t.member != "") & (t.member != ENSEMBLE_MEAN)]


def _colors(products) -> dict:
    return {p: SERIES_COLORS[i % len(SERIES_COLORS)] for i, p in enumerate(products)}


def _series_figure(table, *, x, y, scale, xlabel, ylabel, title, kind):
    dom = _clean(table)
    dom = dom[dom.region_set == DOMAIN]
    main = main_rows(dom)
    products = list(dict.fromkeys(main["product"]))
    colors = _colors(products)
    fig = new_figure((WIDTH, 3.6))
    ax = fig.add_axes([0.1, 0.14, 0.6, 0.72])
    series = {}
    members = _member_rows(dom)
    for p in products:
        rows = main[main["product"] == p].sort_values(x)
        (line,) = ax.plot(rows[x], rows[y] * scale, "o-", ms=3, lw=1.3, color=colors[p],
                          label=p + (" (ensemble mean)" if (members["product"] == p).any()
                                     else ""))
        series[p] = {"x": floats(line.get_xdata()), "y": floats(line.get_ydata())}
        m = members[members["product"] == p]
        if len(m):
            band = m.groupby(x)[y].agg(["min", "max"]).sort_index()
            ax.fill_between(band.index, band["min"] * scale, band["max"] * scale,
                            color=colors[p], alpha=0.15, lw=0,
                            label=f"{p}: {m.member.nunique()} members (min–max)")
    ax.axhline(0.0, color="0.5", lw=0.6)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    region = dom["region"].iloc[0] if len(dom) else ""
    ax.set_title(f"{title}: {region} (positive = uptake by the land)", fontsize=9)
    return fig, {"type": kind, "series": series, "ylabel": ax.get_ylabel(), "scale": scale}


def annual_totals(totals: pd.DataFrame):
    """Annual totals (Pg C a⁻¹) of the study area, product by product."""
    return _series_figure(totals, x="year", y="total_pg", scale=1.0, xlabel="year",
                          ylabel="net land sink (Pg C a⁻¹)", title="Annual totals",
                          kind="annual_totals")


def seasonal_cycle(cycle: pd.DataFrame):
    """Mean seasonal cycle (Tg C month⁻¹) of the study area, product by product."""
    fig, meta = _series_figure(cycle, x="month", y="total_pg", scale=1000.0, xlabel="month",
                               ylabel="net land sink (Tg C month⁻¹)", title="Mean seasonal cycle",
                               kind="seasonal_cycle")
    fig.axes[0].set_xticks(range(1, 13), list("JFMAMJJASOND"))
    return fig, meta


def zonal_means(zonal: pd.DataFrame, *, percentiles=(2.0, 98.0)):
    """Latitude × month zonal means (g C m⁻² month⁻¹, mean over the years) of each product, on
    one colour scale centred on zero."""
    main = main_rows(zonal)
    products = list(dict.fromkeys(main["product"]))
    grids = {}
    for p in products:
        g = (main[main["product"] == p].groupby(["lat", "month"])["mean_flux_g_m2"].mean()
             .unstack("month").sort_index())
        grids[p] = g
    lo, hi = percentile_limits(np.concatenate([g.to_numpy().ravel() for g in grids.values()]),
                               percentiles)
    norm = TwoSlopeNorm(0.0, min(lo, -1e-9), max(hi, 1e-9))
    ncols = min(3, len(products))
    nrows = -(-len(products) // ncols)
    fig = new_figure((WIDTH, 0.9 + 2.3 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    mesh = None
    for ax, p in zip(axes.ravel(), products):
        g = grids[p]
        lat = g.index.to_numpy("f8")
        dlat = np.median(np.abs(np.diff(lat))) if lat.size > 1 else 1.0
        lat_edges = np.concatenate([lat - dlat / 2, [lat[-1] + dlat / 2]])
        mesh = ax.pcolormesh(np.arange(0.5, 12.6, 1.0)[: g.shape[1] + 1], lat_edges,
                             g.to_numpy("f8"), cmap=FLUX_CMAP, norm=norm, rasterized=True)
        ax.set_title(p, fontsize=8)
        ax.set_xticks(range(1, 13), list("JFMAMJJASOND"), fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("latitude (°N)", fontsize=8)
    for ax in axes.ravel()[len(products):]:
        ax.set_visible(False)
    fh = fig.get_figheight()
    fig.subplots_adjust(left=0.09, right=0.97, top=1 - 0.5 / fh, bottom=1.0 / fh, hspace=0.35,
                        wspace=0.12)
    cax = fig.add_axes([0.25, 0.45 / fh, 0.5, 0.12 / fh])
    cb = fig.colorbar(mesh, cax=cax, orientation="horizontal", extend="both")
    cb.set_label("zonal mean net land sink (g C m⁻² month⁻¹)", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    fig.suptitle("Zonal means by latitude and month (mean over the years)", fontsize=10)
    return fig, {"type": "zonal_means", "products": products, "vmin": float(norm.vmin),
                 "vmax": float(norm.vmax), "norm": "TwoSlopeNorm", "cmap": FLUX_CMAP,
                 "limits_from": {"percentiles": list(percentiles), "values": floats([lo, hi])},
                 "colorbar_label": cb.ax.get_xlabel()}


def taylor_diagram(metrics: pd.DataFrame):
    """Taylor (2001) diagram of the study area's monthly fields against the reference:
    correlation (angle) and standard deviation normalised by the reference's (radius); the grey
    arcs are centred RMS differences (normalised)."""
    t = _clean(metrics)
    t = t[t.region_set == DOMAIN]
    ref = str(t["reference"].iloc[0]) if len(t) else "reference"
    main = main_rows(t)
    members = _member_rows(t)
    corr_all = np.concatenate([main["correlation"].to_numpy("f8"),
                               members["correlation"].to_numpy("f8")])
    rmax = max(1.6, float(np.nanmax(np.concatenate(
        [main["sd_ratio"].to_numpy("f8"), members["sd_ratio"].to_numpy("f8"), [1.0]]))) * 1.1)
    half = bool(np.nanmin(np.append(corr_all, 1.0)) < 0)
    fig = new_figure((WIDTH, 4.4))
    ax = fig.add_axes([0.08, 0.1, 0.6, 0.8], projection="polar")
    ax.set_thetamin(0)
    ax.set_thetamax(180 if half else 90)
    ax.set_rlim(0, rmax)
    ticks = np.array([-0.99, -0.9, -0.6, -0.3, 0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99])
    ticks = ticks if half else ticks[ticks >= 0]
    ax.set_thetagrids(np.degrees(np.arccos(ticks)), [f"{c:g}" for c in ticks], fontsize=7)
    ax.tick_params(labelsize=7)
    th, rr = np.meshgrid(np.linspace(0, np.pi if half else np.pi / 2, 180),
                         np.linspace(0, rmax, 120))
    crmse = np.sqrt(1.0 + rr ** 2 - 2.0 * rr * np.cos(th))
    cs = ax.contour(th, rr, crmse, levels=[0.25, 0.5, 0.75, 1.0, 1.25, 1.5], colors="0.65",
                    linewidths=0.6)
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    ax.plot([0.0], [1.0], marker="*", ms=11, color="black", ls="", label=f"{ref} (reference)")
    if len(members):
        ax.plot(np.arccos(np.clip(members["correlation"].to_numpy("f8"), -1, 1)),
                members["sd_ratio"].to_numpy("f8"), "o", ms=3, color="0.6", ls="",
                label="ensemble members")
    points = {}
    colors = _colors(list(dict.fromkeys(main["product"])))
    for _, r in main.iterrows():
        if r["product"] == ref and abs(float(r["sd_ratio"]) - 1) < 1e-9:
            continue
        theta = float(np.arccos(np.clip(r["correlation"], -1, 1)))
        (pt,) = ax.plot([theta], [float(r["sd_ratio"])], "o", ms=7, color=colors[r["product"]],
                        ls="", label=r["product"], markeredgecolor="black", markeredgewidth=0.4)
        points[r["product"]] = {"correlation": float(np.cos(pt.get_xdata()[0])),
                                "sd_ratio": float(pt.get_ydata()[0]),
                                "overall_score": float(r.get("overall_score", np.nan))}
    ax.set_xlabel("standard deviation / reference's (1)", fontsize=8, labelpad=12)
    ax.text(np.radians(50 if not half else 95), rmax * 1.13, "correlation", fontsize=8,
            rotation=-40 if not half else 0, ha="center")
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.05, 0.5))
    fig.suptitle(f"Taylor diagram: monthly fields against {ref} (study area)", fontsize=10)
    return fig, {"type": "taylor", "reference": ref, "points": points}
