"""The enhancement-scenarios section of the atlas (SCIENCE.md §9, seed 002): for each scenario of
the published ``scenarios`` product, the projection of the measured sink plus the measures against
the target band, the maps of the sink the measures add, of the storage change of the land-use
changes and of the share of each cell each measure is applied to, and the added sink by province —
drawn from the product and its tables (projection.csv, target.csv, measures.csv,
region_totals.csv), only when the store holds it.

:func:`lazy_fields` adds the coarsened maps (every scenario, measure and target year; the section
picks) to the atlas's one dask pass; :func:`section` draws the figures and returns the section
(None without the product). Figure functions return ``(figure, meta)`` like :mod:`~.maps`.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd

from . import fields as fl
from . import maps
from .page import FigureEntry, Section, esc
from .style import FLUX_CMAP, OKABE_ITO, PERCENTILES, floats, new_figure

WIDTH = 7.2
PRODUCT = "scenarios"
TOP = 15                   # provinces in the bar chart
PANEL_CELLS = 300          # blocks along a side of a small-multiple panel (~ its pixels)
ADDED_CMAP = "YlGn"
TREATED_CMAP = "YlGnBu"
GT = "Gt CO₂ a⁻¹"
ECOSYSTEM_COLORS = {"forest": OKABE_ITO["green"], "grassland": OKABE_ITO["yellow"],
                    "cropland": OKABE_ITO["orange"], "wetland": OKABE_ITO["blue"],
                    "coastal": OKABE_ITO["sky"], "other": OKABE_ITO["purple"]}
BASELINE_COLOR = "#d0d0d0"
TARGET_COLOR = OKABE_ITO["vermillion"]


def _slug(s) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(s))


def _blank_zero(field, top=None):
    """``field`` with its zero blocks blank (no measure, no change), optionally capped at
    ``top`` (shares of 100 % come back as 100.000001 from the block means)."""
    v = np.asarray(field.values, "f8")
    v = np.where(v != 0, v if top is None else np.minimum(v, top), np.nan)
    return dataclasses.replace(field, values=v)


def _group(eco) -> str:
    return eco if eco in ECOSYSTEM_COLORS else "other"


# --- lazy fields ----------------------------------------------------------------------------------
def _nonzero(ds) -> fl.LazyMap:
    """Cells ≠ 0 of each scenario's layers: which maps have anything to show."""
    parts = {"treated": (ds["treated_fraction"] > 0).sum(["lat", "lon"]),
             "added": (ds["added_sink"].fillna(0.0) != 0).sum(["lat", "lon"]),
             "stock": (ds["stock_change"].fillna(0.0) != 0).sum(["lat", "lon"])}
    dims = {k: v.dims for k, v in parts.items()}
    coords = {"scenario": list(ds.scenario.values), "measure": list(ds.measure.values),
              "year": [int(y) for y in ds.year.values]}

    def finish(v):
        out = {}
        for k, arr in v.items():
            arr = np.asarray(arr)
            for idx in np.ndindex(arr.shape):
                out[(k, *(coords[d][i] for d, i in zip(dims[k], idx)))] = int(arr[idx])
        return out
    return fl.LazyMap(parts, finish)


def lazy_fields(c, opened: dict, regions, max_cells: int) -> dict:
    """The section's lazy maps, keyed ``scenarios:…``: per scenario the added sink of each
    target year, the stock change, each measure's treated share (panels: at most
    :data:`PANEL_CELLS` blocks a side), and the non-zero cell counts of all of them."""
    if PRODUCT not in c.products:
        return {}
    ds = opened[PRODUCT]
    area = fl.area_of(ds["stock_change"], regions)    # (the dataset's chunks differ by variable)
    lazy = {"scenarios:nonzero": _nonzero(ds)}
    panel = min(max_cells, PANEL_CELLS)
    for s in ds.scenario.values:
        one = ds[["added_sink", "stock_change", "treated_fraction"]].sel(scenario=s)
        for y in ds.year.values:
            lazy[f"scenarios:{s}:added:{int(y)}"] = fl.mean_map(
                one["added_sink"].sel(year=y, drop=True), area, max_cells=max_cells)
        lazy[f"scenarios:{s}:stock"] = fl.mean_map(one["stock_change"], area,
                                                   max_cells=max_cells, units="t C km-2")
        for m in ds.measure.values:
            lazy[f"scenarios:{s}:treated:{m}"] = fl.mean_map(
                one["treated_fraction"].sel(measure=m, drop=True) * 100.0, area,
                max_cells=panel, units="%")
    return lazy


# --- figures --------------------------------------------------------------------------------------
def _shades(comps: list[str], eco: dict) -> dict:
    """A colour per component: its ecosystem's, lighter for each further measure of it."""
    from matplotlib.colors import to_rgb

    seen: dict = {}
    out = {}
    for comp in comps:
        g = _group(eco.get(comp))
        k = seen[g] = seen.get(g, -1) + 1
        mix = min(0.7, 0.3 * k)
        out[comp] = tuple((1 - mix) * np.asarray(to_rgb(ECOSYSTEM_COLORS[g])) + mix)
    return out


def projection_chart(proj: pd.DataFrame, target: pd.Series, *, mapped: dict | None = None):
    """The measured baseline with the measures' central contributions stacked on it (colours by
    ecosystem; contributions below zero stacked under the baseline), the total's low–high band
    and central line, and the target band (darker between the target years)."""
    p = proj.copy()
    p["ecosystem"] = p["ecosystem"].fillna("")
    years = np.array(sorted(p.year.unique()))
    wide = {b: p.pivot_table(index="year", columns="component", values=b, aggfunc="sum",
                             sort=False).reindex(years) for b in ("low", "central", "high")}
    comps = [x for x in dict.fromkeys(p.component) if x not in ("baseline", "total")]
    eco = p.drop_duplicates("component").set_index("component")["ecosystem"].to_dict()
    colors = _shades(comps, eco)
    base = wide["central"]["baseline"].to_numpy("f8")
    tl, th = float(target.target_low), float(target.target_high)
    y0, y1 = (int(x) for x in str(target.target_years).split("-"))
    fig = new_figure((WIDTH, 3.9))
    ax = fig.add_axes([0.09, 0.13, 0.5, 0.75])
    ax.axhspan(tl, th, color=TARGET_COLOR, alpha=0.12, lw=0, zorder=4)
    for v in (tl, th):
        ax.axhline(v, color=TARGET_COLOR, lw=0.8, ls="--", zorder=4)
    ax.fill_between([y0, y1], tl, th, color=TARGET_COLOR, alpha=0.35, lw=0, zorder=4,
                    label=f"target {tl:g}–{th:g} {GT} (darker: {y0}–{y1})")
    ax.fill_between(years, 0, base, color=BASELINE_COLOR, lw=0, zorder=2,
                    label="baseline: measured sink (central)")
    pos, neg = base.copy(), base.copy()
    stacks = {}
    for comp in comps:
        x = np.nan_to_num(wide["central"][comp].to_numpy("f8"))
        lo, hi = np.where(x >= 0, pos, neg + x), np.where(x >= 0, pos + x, neg)
        tag = ("" if (mapped or {}).get(comp, True) else ", not mapped") + \
            ("" if np.any(x != 0) else ", adds nothing")
        ax.fill_between(years, lo, hi, color=colors[comp], lw=0.3, edgecolor="white", zorder=3,
                        label=f"{comp} ({eco.get(comp) or 'other'}{tag})")
        pos, neg = pos + np.maximum(x, 0), neg + np.minimum(x, 0)
        stacks[comp] = floats(x)
    tot = {b: wide[b]["total"].to_numpy("f8") for b in ("low", "central", "high")}
    for b in ("low", "high"):
        ax.plot(years, tot[b], color="black", lw=0.8, ls="--", zorder=6,
                label="total, low and high" if b == "low" else None)
    ax.plot(years, tot["central"], color="black", lw=1.4, zorder=6, label="total, central")
    reach = target.get("central_reaches_lower")
    if pd.notna(reach):
        ax.axvline(float(reach), color="black", ls=":", lw=0.9, zorder=6)
        ax.annotate(f"central ≥ {tl:g} from {int(reach)}", (float(reach), tl),
                    xytext=(4, -12), textcoords="offset points", fontsize=7, zorder=7)
    top = np.nanmax([np.nanmax(tot["high"]), np.nanmax(pos), th])
    ax.set_ylim(min(0.0, float(np.nanmin(neg))), 1.08 * top)
    ax.set_xlim(years[0], years[-1])
    ax.set_xlabel("year", fontsize=8)
    ax.set_ylabel(f"land carbon sink ({GT})", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=6.5, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5),
              title="components (ecosystem)", title_fontsize=7)
    ax.set_title(f"{p.scenario.iloc[0]}: projected sink against the target", fontsize=9)
    return fig, {"type": "projection", "units": GT, "years": [int(y) for y in years],
                 "baseline_central": floats(base), "stacks_central": stacks,
                 "colors": {k: "#%02x%02x%02x" % tuple(int(255 * c) for c in v)
                            for k, v in colors.items()},
                 "total": {b: floats(v) for b, v in tot.items()},
                 "target_band": [tl, th], "target_years": [y0, y1],
                 "central_reaches_lower": None if pd.isna(reach) else int(reach)}


def added_map(bm, field, *, title: str, percentiles=PERCENTILES):
    """The added sink: cells without any measure blank, colours from 0 (or the 2nd percentile
    where it is negative) to the 98th percentile of the cells with a measure."""
    v = np.asarray(field.values, "f8")
    shown = _blank_zero(field)
    lo, hi = maps.percentile_limits(shown.valid(), percentiles)
    neg = lo < 0
    fig, meta = maps.continuous_map(bm, shown, title=title, quantity="added sink",
                                    cmap=FLUX_CMAP if neg else ADDED_CMAP, diverging=neg,
                                    vlim=(lo if neg else 0.0, hi))
    meta["limits_from"] = {"percentiles": list(percentiles), "values": [lo, hi],
                           "of": "cells with a measure"}
    meta["cells_blank_no_measure"] = int(np.isfinite(v).sum() - shown.valid().size)
    return fig, meta


def region_bars(table: pd.DataFrame, year: int, *, top: int = TOP):
    """The added sink of the ``top`` regions of the largest region set (provinces) in ``year``
    (Tg C a⁻¹), largest first, with the share they hold of the study area's total."""
    t = table[table.quantity == "added sink"].copy()
    t = t[pd.to_numeric(t.year, errors="coerce") == year]
    sets = [s for s in dict.fromkeys(t.region_set) if s != "domain"]
    rset = "province" if "province" in sets else max(sets, key=lambda s: (t.region_set == s).sum())
    rows = t[t.region_set == rset].nlargest(top, "total_tg_c").iloc[::-1]
    dom = t.loc[t.region_set == "domain", "total_tg_c"]
    total = float(dom.iloc[0]) if len(dom) else float(t[t.region_set == rset].total_tg_c.sum())
    fig = new_figure((WIDTH, 1.3 + 0.2 * max(len(rows), 5)))
    h = fig.get_figheight()
    ax = fig.add_axes([0.24, 0.6 / h, 0.68, 1 - 1.05 / h])
    vals = rows.total_tg_c.to_numpy("f8")
    cont = ax.barh(list(rows.region), vals, height=0.7, color=np.where(
        vals >= 0, OKABE_ITO["green"], OKABE_ITO["vermillion"]))
    ax.axvline(0.0, color="0.4", lw=0.6)
    ax.set_xlabel("added sink (Tg C a⁻¹, central)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="x", alpha=0.3, lw=0.5)
    shown = float(vals.sum())
    share = 100 * shown / total if total else float("nan")
    ax.set_title(f"{rows.scenario.iloc[0] if len(rows) else ''}: added sink by {rset}, {year} "
                 f"(top {len(rows)}: {share:.0f} % of {total:,.1f} Tg C a⁻¹)", fontsize=9)
    return fig, {"type": "bars", "units": "Tg C a⁻¹", "year": year, "region_set": rset,
                 "bars": {r: float(p.get_width()) for r, p in zip(rows.region, cont.patches)},
                 "domain_total_tg_c": total, "shown_share_pct": share}


# --- text -----------------------------------------------------------------------------------------
def _year(v) -> str:
    return str(int(v)) if pd.notna(v) else ""


def reach_text(r: pd.Series, first_year: int) -> str:
    """Whether and when the totals reach the target band (target.csv), in sentences."""
    tl, th = float(r.target_low), float(r.target_high)
    y0, y1 = (int(x) for x in str(r.target_years).split("-"))
    out = [f"Target band {tl:g}–{th:g} {GT} in {y0}–{y1} (shaded; dashed: its bounds)."]
    c = r.get("central_reaches_lower")
    if pd.notna(c):
        s = f"The central total reaches the lower bound {tl:g} {GT} in {int(c)}"
        if int(c) == first_year and r.baseline_central >= tl:
            s += " (the first year of the projection: the baseline alone is above it)"
        hold = r.get("central_holds_lower_from")
        if pd.notna(hold) and int(hold) != int(c):
            s += f", falls back below it and stays above it only from {int(hold)}"
        elif pd.isna(hold):
            s += ", but does not stay above it to the end of the projection"
        out.append(s + ".")
    else:
        out.append(f"The central total does not reach the lower bound {tl:g} {GT}.")
    b = {k: _year(r.get(f"{k}_reaches_lower")) for k in ("low", "high")}
    out.append(f"The total's low bound reaches it in {b['low']}, its high bound in {b['high']}."
               if b["low"] and b["high"] else
               f"Only the total's high bound reaches it, in {b['high']}." if b["high"] else
               f"Only the total's low bound reaches it, in {b['low']}." if b["low"] else
               "Neither the total's low nor its high bound reaches it.")
    up = r.get("central_reaches_upper")
    out.append(f"The central total reaches the upper bound {th:g} in {int(up)}." if pd.notna(up)
               else f"The central total stays below the upper bound {th:g}.")
    met = [k for k in ("low", "central", "high") if bool(r.get(f"met_by_{k}"))]
    out.append(f"In {y1} the total is {r[f'total_{y1}_central']:.2f} "
               f"({r[f'total_{y1}_low']:.2f}–{r[f'total_{y1}_high']:.2f}) {GT} on a baseline of "
               f"{r.baseline_central:.2f} ({r.baseline_low:.2f}–{r.baseline_high:.2f}; "
               f"{r.baseline_from}). Lower bound reached at some time up to {y1} (met_by) by "
               + (f"the {' and '.join(filter(None, [', '.join(met[:-1]), met[-1]]))} total"
                  + "s" * (len(met) > 1) if met else "none of the low, central and high totals")
               + ".")
    return " ".join(out)


def _summary(target: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in target.itertuples():
        y1 = str(r.target_years).split("-")[1]
        rows.append({"scenario": r.scenario, "target (Gt CO₂ a⁻¹)":
                     f"{r.target_low:g}–{r.target_high:g} in "
                     f"{str(r.target_years).replace('-', '–')}",
                     "baseline, central (low–high)": f"{r.baseline_central:.2f} "
                     f"({r.baseline_low:.2f}–{r.baseline_high:.2f})",
                     f"total {y1}, central (low–high)": "{:.2f} ({:.2f}–{:.2f})".format(
                         *(getattr(r, f"total_{y1}_{b}") for b in ("central", "low", "high"))),
                     "central reaches lower bound": _year(r.central_reaches_lower),
                     "low / high reach it": f"{_year(r.low_reaches_lower) or '–'} / "
                     f"{_year(r.high_reaches_lower) or '–'}",
                     "central holds it from": _year(r.central_holds_lower_from),
                     "added peak (central)": f"{r.added_peak_central:.3f} in "
                     f"{_year(r.added_peak_year)}"})
    return pd.DataFrame(rows)


def _ha(x) -> str:
    return f"{x / 1e6:,.1f} Mha" if pd.notna(x) else "–"


# --- the section ----------------------------------------------------------------------------------
def section(atlas, bm, c, fields: dict, tables: dict, opened: dict) -> Section | None:
    """The enhancement-scenarios section (None when the run has no scenarios product)."""
    if PRODUCT not in c.products:
        return None
    p, ds = c.products[PRODUCT], opened[PRODUCT]
    src = f"Source {p.key}@{p.version}"
    dom = bm.label
    proj, target = tables.get((PRODUCT, "projection.csv")), tables.get((PRODUCT, "target.csv"))
    meas = tables.get((PRODUCT, "measures.csv"))
    regions = tables.get((PRODUCT, "region_totals.csv"))
    nz = fields.get("scenarios:nonzero", {})
    skipped = ds.attrs.get("scenarios_skipped", "")
    sec = Section("scenarios", "Enhancement scenarios",
                  "Measures of the seed-002 catalogue placed on the land-use map of "
                  f"{esc(ds.attrs.get('allocation_year', ''))} "
                  f"({esc(ds.attrs.get('allocation', ''))}; national potentials spread evenly "
                  "over their eligible area), the sink they add on top of the sink this run "
                  "measured, and where that leaves the target band (SCIENCE.md §9)."
                  + (f" Scenarios skipped on this study area: {esc(skipped)}." if skipped
                     else ""))
    if target is not None and len(target):
        atlas.table(sec, f"scenarios: {dom}, totals against the target", _summary(target),
                    name="scenarios_summary.csv")

    def add(fig_id, title, caption, made, **extra):
        atlas.add(sec, fig_id, title, f"{caption} {src}.", made, product=PRODUCT, **extra)
    for s in ds.scenario.values:
        s = str(s)
        slug = _slug(s)
        sec.blocks.append(("html", f"<h3>{esc(s)}</h3>"))
        t = target[target.scenario == s] if target is not None else None
        r = t.iloc[0] if t is not None and len(t) else None
        m = meas[meas.scenario == s] if meas is not None else pd.DataFrame()
        mapped = dict(zip(m.component, m.mapped.astype(bool))) if len(m) else None
        pj = proj[proj.scenario == s] if proj is not None else None
        if r is not None and pj is not None and len(pj):
            add(f"scenarios_{slug}_projection", f"{s}: projection against the target",
                f"Measured sink (baseline, grey) plus the central sink each measure adds "
                f"(stacked, coloured by ecosystem), the total's low and high bounds (dashed) and "
                f"central line, {GT}, {int(pj.year.min())}–{int(pj.year.max())}. "
                + reach_text(r, int(pj.year.min())) + " Tables projection.csv, target.csv.",
                projection_chart(pj, r, mapped=mapped), scenario=s)
        years = [int(y) for y in ds.year.values]
        y = int(str(r.target_years).split("-")[1]) if r is not None else years[-1]
        y = y if y in years else years[-1]
        key = f"scenarios:{s}:added:{y}"
        dt = regions[(regions.scenario == s) & (regions.quantity == "added sink")
                     & (regions.region_set == "domain")
                     & (pd.to_numeric(regions.year, errors="coerce") == y)] \
            if regions is not None else pd.DataFrame()
        tot = (f" Mapped total {dt.total_tg_c.iloc[0]:,.1f} Tg C a⁻¹ "
               f"({dt.total_tg_c.iloc[0] * 44 / 12e3:.3f} {GT})" if len(dt) else "")
        off = [x for x, on in (mapped or {}).items() if not on]
        tot += (f"; not on the map (national only): {', '.join(off)}." if off else "." if tot
                else "")
        if key in fields and nz.get(("added", s, y), 1) > 0:
            add(f"scenarios_{slug}_added_map", f"{s}: added sink {y}",
                f"Sink added in {y} by the scenario's mapped measures (central), per cell, "
                f"{dom}, t C km⁻² a⁻¹ (= g C m⁻² a⁻¹); a national potential is spread evenly "
                "over its eligible area. Cells without a measure blank; colour limits 0 to the "
                f"98th percentile of the cells with a measure.{tot}",
                added_map(bm, fields[key], title=f"{s}: added sink {y}, {dom}"),
                scenario=s, variable="added_sink", year=y)
        else:
            sec.blocks.append(("html", f"<p>{esc(s)}: no measure adds sink on the map in {y}."
                               f"{esc(tot)}</p>"))
        key = f"scenarios:{s}:stock"
        if key in fields and nz.get(("stock", s), 0) > 0:
            add(f"scenarios_{slug}_stock_map", f"{s}: storage change of the land-use changes",
                "Long-run change of carbon storage where the scenario's land-use changes are "
                "placed (InVEST carbon pools of the class the land becomes minus its storage "
                f"now, × the treated share), {dom}, t C km⁻²; cells without change blank. Colour "
                "limits: 2nd–98th percentiles of the cells with a change.",
                maps.continuous_map(bm, _blank_zero(fields[key]), title=f"{s}: storage "
                                    f"change of the land-use changes, {dom}",
                                    quantity="storage change", diverging=True),
                scenario=s, variable="stock_change")
        else:
            conv = m[m.converts_to.notna() & (m["mode"] != "potential_share")] if len(m) else m
            placed = conv[conv.allocated_ha.fillna(0) > 0] if len(conv) else conv
            why = (f"its land-use changes ({', '.join(placed.component)}) are placed on land "
                   "whose storage pools are those of the class they become" if len(placed) else
                   f"its land-use changes ({', '.join(conv.component)}) find no eligible land"
                   if len(conv) else "it places no land-use change by area (national "
                   "potentials convert no land)")
            sec.blocks.append(("html", f"<p>{esc(s)}: no storage change anywhere on the map: "
                               f"{esc(why)}.</p>"))
        panels = {str(x): _blank_zero(fields[f"scenarios:{s}:treated:{x}"], 100.0)
                  for x in ds.measure.values
                  if nz.get(("treated", s, str(x)), 0) > 0
                  and f"scenarios:{s}:treated:{x}" in fields}
        if panels:
            info = m.set_index("component") if len(m) else pd.DataFrame()
            alloc = "; ".join(
                f"{x}: national potential over {_ha(info.eligible_ha[x])}"
                if info["mode"][x] == "potential_share" else f"{x}: "
                f"{_ha(info.allocated_ha[x])} of {_ha(info.eligible_ha[x])} eligible, "
                f"{info.priority[x]}" for x in panels if x in info.index)
            add(f"scenarios_{slug}_treated_maps", f"{s}: where the measures go",
                f"Share of each cell's area each mapped measure is applied to (%), {dom}; for "
                f"a national potential its even spread over the eligible area; blank: none. "
                + (f"{alloc}. " if alloc else "") + "Table measures.csv.",
                maps.panel_maps(bm, panels, title=f"{s}: treated share of the cell's area",
                                quantity="treated share", ncols=2 if len(panels) <= 4 else 3,
                                cmap=TREATED_CMAP, vlim=(0.0, 100.0)),
                scenario=s, variable="treated_fraction", measures=list(panels))
        else:
            sec.blocks.append(("html", f"<p>{esc(s)}: no measure is placed on the map.</p>"))
        if regions is not None and nz.get(("added", s, y), 1) > 0:
            rt = regions[regions.scenario == s]
            if ((rt.quantity == "added sink") & (rt.region_set != "domain")).any():
                made = region_bars(rt, y)
                add(f"scenarios_{slug}_regions", f"{s}: added sink by {made[1]['region_set']} "
                    f"{y}", f"Sink added in {y} (central) in the {TOP} regions "
                    f"({made[1]['region_set']}) with the most, Tg C a⁻¹ (true cell areas). "
                    "Table region_totals.csv.", made, scenario=s, year=y)
    atlas.table(sec, "measures of every scenario (measures.csv)", meas, open_=False,
                name="scenarios_measures.csv")
    return sec if any(isinstance(b, FigureEntry) for b in sec.blocks) else None
