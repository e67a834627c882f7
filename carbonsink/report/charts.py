"""Charts of a run's tables: totals through time with trend lines, regional totals, areas of change
classes and dominant factors, and the ionic-strength random forest's scores.

Each function takes a published table (pandas, as read from the product's attachment) and returns
``(figure, meta)``; ``meta`` holds what the artists draw (line data, bar lengths, wedge shares), read
back from the artists themselves, so the manifest shows exactly what the figure shows.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .style import (
    CHANGE_COLORS,
    FACTOR_COLORS,
    OKABE_ITO,
    SERIES_COLORS,
    floats,
    label,
    new_figure,
    ols_trend,
)

WIDTH = 7.2
DOMAIN = "domain"
SMALL_SET = 8          # region sets with at most this many regions get a line per region
TG = "Tg C a⁻¹"
PREDICTOR_NAMES = {"pr": "precipitation", "tas": "air temperature",
                   "aet": "actual evapotranspiration", "npp": "NPP"}


def _small_sets(table: pd.DataFrame) -> list[str]:
    sets = [s for s in dict.fromkeys(table["region_set"]) if s != DOMAIN]
    return [s for s in sets if table.loc[table.region_set == s, "region"].nunique() <= SMALL_SET]


def _line_with_trend(ax, x, y, color, name):
    (line,) = ax.plot(x, y, "o-", color=color, ms=3, lw=1.2)
    t = ols_trend(x, y)
    x = np.asarray(x, "f8")
    star = "*" if t["p_value"] < 0.05 else ""
    if np.isfinite(t["slope"]):
        ax.plot(x, t["intercept"] + t["slope"] * x, "--", color=color, lw=0.9)
    line.set_label(f"{name}: {t['slope']:+.3g} Tg C a⁻²{star}")
    return {"x": floats(line.get_xdata()), "y": floats(line.get_ydata()), "trend": t}


def totals_timeseries(table: pd.DataFrame, *, title: str, quantity: str):
    """Totals (Tg C a⁻¹) of the study area and of each small region set through the years, each
    with its OLS trend (dashed; * p < 0.05)."""
    sets = _small_sets(table)
    n = 1 + len(sets)
    fig = new_figure((WIDTH, 1.0 + 2.3 * n))
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    series = {}
    dom = table[table.region_set == DOMAIN]
    for i, (region, rows) in enumerate(dom.groupby("region", sort=False)):
        series[f"{DOMAIN}/{region}"] = _line_with_trend(axes[0], rows["year"], rows["total_tg"],
                                                       SERIES_COLORS[i], region)
    axes[0].set_title(f"{title}, {dom['region'].iloc[0] if len(dom) else 'study area'}", fontsize=10)
    for ax, s in zip(axes[1:], sets):
        rows = table[table.region_set == s]
        for i, (region, r) in enumerate(rows.groupby("region", sort=False)):
            series[f"{s}/{region}"] = _line_with_trend(ax, r["year"], r["total_tg"],
                                                      SERIES_COLORS[i % len(SERIES_COLORS)],
                                                      region)
        ax.set_title(f"by {label(s)}", fontsize=9)
    for ax in axes:
        ax.set_ylabel(f"{quantity} ({TG})", fontsize=8)
        ax.grid(alpha=0.3, lw=0.5)
        ax.axhline(0.0, color="0.5", lw=0.6)
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("year", fontsize=8)
    fig.subplots_adjust(left=0.1, right=0.62, top=1 - 0.45 / (1.0 + 2.3 * n), bottom=0.08,
                        hspace=0.35)
    return fig, {"type": "timeseries", "units": TG, "series": series,
                 "trend_units": "Tg C a⁻²", "ylabel": axes[0].get_ylabel()}


def _bars(ax, rows, quantity):
    rows = rows.sort_values("total_tg")
    colors = np.where(rows["total_tg"] >= 0, OKABE_ITO["green"], OKABE_ITO["vermillion"])
    cont = ax.barh(rows["region"], rows["total_tg"], xerr=rows["total_tg_sd"].fillna(0.0),
                   color=colors, error_kw={"lw": 0.6, "ecolor": "0.3"}, height=0.7)
    ax.axvline(0.0, color="0.4", lw=0.6)
    ax.tick_params(labelsize=7)
    ax.set_xlabel(f"mean {quantity} ({TG})", fontsize=8)
    ax.grid(axis="x", alpha=0.3, lw=0.5)
    return {r: float(p.get_width()) for r, p in zip(rows["region"], cont.patches)}


def regional_bars(summary: pd.DataFrame, *, title: str, quantity: str):
    """Period-mean totals (± s.d. across years) of every region of every region set: large sets
    (provinces) in the left column, small ones (divisions, karst regions) in the right."""
    sets = [s for s in dict.fromkeys(summary["region_set"]) if s != DOMAIN]
    size = {s: int((summary.region_set == s).sum()) for s in sets}
    big = [s for s in sets if size[s] > SMALL_SET]
    small = [s for s in sets if size[s] <= SMALL_SET]
    col_h = [sum(0.75 + 0.15 * size[s] for s in col) for col in (big, small) if col]
    height = 1.1 + max(col_h)
    fig = new_figure((WIDTH, height))
    columns = [c for c in (big, small) if c]
    lefts = [0.2, 0.66] if len(columns) == 2 else [0.32]
    width = 0.3 if len(columns) == 2 else 0.6
    bars = {}
    for col, left in zip(columns, lefts):
        avail = height - 1.1
        top = height - 0.65
        total = sum(0.75 + 0.15 * size[s] for s in col)
        for s in col:
            h = (0.15 * size[s] + 0.25) * avail / total
            ax = fig.add_axes([left, (top - h) / height, width, h / height])
            bars[s] = _bars(ax, summary[summary.region_set == s], quantity)
            ax.set_title(f"by {label(s)}", fontsize=9)
            top -= h + 0.5 * avail / total
    fig.suptitle(f"{title} (bars ± s.d. across years)", fontsize=10)
    return fig, {"type": "bars", "units": TG, "bars": bars}


def _stacked_shares(ax, table: pd.DataFrame, region_sets, colors):
    rows = table[table.region_set.isin(region_sets)]
    regions = list(dict.fromkeys(rows["region"]))
    cats = list(dict.fromkeys(table["category"]))
    left = np.zeros(len(regions))
    out: dict = {}
    for cat in cats:
        share = (rows[rows.category == cat].set_index("region")["share_pct"]
                 .reindex(regions).fillna(0.0).to_numpy())
        cont = ax.barh(regions, share, left=left, color=colors.get(cat, "#999999"),
                       label=label(cat), height=0.7, edgecolor="white", linewidth=0.3)
        for r, p in zip(regions, cont.patches):
            out.setdefault(r, {})[cat] = float(p.get_width())
        left += share
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the region's area (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.invert_yaxis()
    return out


def category_areas(table: pd.DataFrame, *, title: str, kind: str):
    """Areas of dominant factors (``kind="dominant"``: a pie of the study area) or change classes
    (``"change"``: bars of the study area's areas) and their shares in each small region set."""
    colors = FACTOR_COLORS if kind == "dominant" else CHANGE_COLORS
    dom = table[table.region_set == DOMAIN]
    sets = _small_sets(table)
    fig = new_figure((WIDTH, 3.6))
    ax0 = fig.add_axes([0.02, 0.12, 0.4, 0.72])
    meta: dict = {"type": f"{kind}_areas"}
    cats = list(dom["category"])
    if kind == "dominant":
        shares = dom["share_pct"].to_numpy(dtype="f8")
        wedges, _texts, _auto = ax0.pie(
            np.where(np.isfinite(shares), shares, 0.0), colors=[colors.get(c) for c in cats],
            autopct=lambda p: f"{p:.1f} %" if p >= 3 else "", pctdistance=0.72,
            startangle=90, counterclock=False, wedgeprops={"linewidth": 0.6,
                                                           "edgecolor": "white"},
            textprops={"fontsize": 7})
        meta["pie_share_pct"] = {c: float((w.theta2 - w.theta1) / 3.6)
                                 for c, w in zip(cats, wedges)}
        ax0.set_title(f"{dom['region'].iloc[0]}: share of area", fontsize=9)
        ax0.legend(wedges, [label(c) for c in cats], fontsize=7, frameon=False,
                   loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=2)
    else:
        ax0.set_position([0.1, 0.3, 0.3, 0.55])
        area = dom["area_km2"].to_numpy(dtype="f8") / 1e4
        cont = ax0.bar(range(len(cats)), area, color=[colors.get(c) for c in cats])
        ax0.set_xticks(range(len(cats)), [label(c) for c in cats], rotation=40, ha="right",
                       fontsize=7)
        ax0.set_ylabel("area (10⁴ km²)", fontsize=8)
        ax0.tick_params(labelsize=7)
        meta["bar_area_1e4_km2"] = {c: float(p.get_height()) for c, p in zip(cats, cont.patches)}
        ax0.set_title(f"{dom['region'].iloc[0]}", fontsize=9)
    if sets:
        ax1 = fig.add_axes([0.62, 0.25, 0.35, 0.6])
        meta["region_share_pct"] = _stacked_shares(ax1, table, sets, colors)
        ax1.set_title("by " + " and ".join(label(s) for s in sets), fontsize=9)
        if kind != "dominant":
            ax1.legend(fontsize=6, frameon=False, loc="upper center",
                       bbox_to_anchor=(0.3, -0.18), ncol=3)
    fig.suptitle(title, fontsize=10)
    return fig, meta


# --- the ionic-strength random forest -------------------------------------------------------------
def _cv_columns(table: pd.DataFrame):
    cols = {c.lower(): c for c in table.columns}
    obs = next((cols[c] for c in ("observed", "ionic_strength_observed", "y_true") if c in cols),
               None)
    pred = next((cols[c] for c in ("predicted", "ionic_strength_predicted", "y_pred")
                 if c in cols), None)
    fold = next((cols[c] for c in ("fold", "cv_fold") if c in cols), None)
    r2 = next((cols[c] for c in ("r2", "fold_r2", "cv_r2") if c in cols), None)
    return obs, pred, fold, r2


def random_forest(cv: pd.DataFrame, model: dict, *, title: str):
    """The forest's cross-validation — observed vs out-of-fold predicted I when the CV table has
    the predictions, else R² per fold when it has folds, else its published scores — and the
    predictors' importances."""
    p = "ionic_strength_"
    m = {k.removeprefix(p): v for k, v in model.items()}
    fig = new_figure((WIDTH, 3.4))
    ax0 = fig.add_axes([0.09, 0.17, 0.38, 0.68])
    ax1 = fig.add_axes([0.67, 0.17, 0.3, 0.68])
    obs, pred, fold, r2 = _cv_columns(cv)
    meta: dict = {"type": "random_forest"}
    units = pretty_unit = str(m.get("cv_rmse_units", "mol L-1")).replace("L-1", "L⁻¹")
    if obs and pred:
        o, q = cv[obs].to_numpy("f8"), cv[pred].to_numpy("f8")
        ax0.scatter(o, q, s=6, color=OKABE_ITO["blue"], alpha=0.6, linewidths=0)
        lim = [float(np.nanmin([o, q])), float(np.nanmax([o, q]))]
        ax0.plot(lim, lim, color="0.3", lw=0.8)
        ax0.set_xlabel(f"observed I ({units})", fontsize=8)
        ax0.set_ylabel(f"predicted I, out of fold ({units})", fontsize=8)
        meta["mode"] = "observed_vs_predicted"
        meta["n_points"] = int(np.isfinite(o).sum())
    elif fold and r2:
        cont = ax0.bar(cv[fold].astype(str), cv[r2].to_numpy("f8"), color=OKABE_ITO["blue"])
        ax0.set_xlabel("fold", fontsize=8)
        ax0.set_ylabel("R² (out of fold)", fontsize=8)
        meta["mode"] = "fold_scores"
        meta["fold_r2"] = [float(b.get_height()) for b in cont.patches]
    else:
        names = {"cv_r2": f"{m.get('cv_folds', '')}-fold CV\n(pooled)",
                 "cv_r2_fold_mean": "mean of\nfolds", "basin_cv_r2": "whole basins\nheld out"}
        keys = [k for k in names if m.get(k) is not None]
        cont = ax0.bar([names[k] for k in keys], [float(m[k]) for k in keys],
                       color=[OKABE_ITO["blue"], OKABE_ITO["sky"], OKABE_ITO["orange"]][:len(keys)])
        for b, k in zip(cont.patches, keys):
            ax0.annotate(f"{float(m[k]):.3f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                         ha="center", va="bottom", fontsize=7)
        ax0.set_ylabel("R² (1)", fontsize=8)
        ax0.set_ylim(min(0.0, *[float(m[k]) for k in keys]) if keys else 0, 1.0)
        meta["mode"] = "scores"
        meta["r2"] = {k: float(b.get_height()) for k, b in zip(keys, cont.patches)}
    rmse = ", ".join(f"{lab} {float(m[k]):.4f}" for k, lab in
                     (("cv_rmse", "RMSE"), ("basin_cv_rmse", "basins held out"))
                     if m.get(k) is not None)
    ax0.set_title(f"cross-validation ({m.get('n_training_rows', '?')} basin-years)\n"
                  f"{rmse} {pretty_unit}", fontsize=8)
    ax0.tick_params(labelsize=7)
    imp = {k.removeprefix("importance_"): float(v) for k, v in m.items()
           if k.startswith("importance_") and v is not None and math.isfinite(float(v))}
    order = sorted(imp, key=imp.get)
    cont = ax1.barh([PREDICTOR_NAMES.get(k, k) for k in order], [imp[k] for k in order],
                    color=OKABE_ITO["green"])
    ax1.set_xlabel("impurity importance (1)", fontsize=8)
    ax1.set_title("predictor importances", fontsize=8)
    ax1.tick_params(labelsize=7)
    meta["importances"] = {k: float(b.get_width()) for k, b in zip(order, cont.patches)}
    meta["scores"] = {k: m.get(k) for k in ("cv_r2", "cv_rmse", "cv_r2_fold_mean", "basin_cv_r2",
                                            "basin_cv_rmse", "cv_folds", "cv_scheme")}
    fig.suptitle(title, fontsize=10)
    return fig, meta
