"""The carbon-sequestration services section of the atlas (SCIENCE.md §7): maps of storage,
emission, the ratio E/C and the wind-routed flow paths, the region flow matrix, the emission terms
per province and the drivers (Geodetector q, Pearson r, interactions) — drawn from the published
``services_*`` products and their tables, only when the store holds them.

:func:`lazy_fields` adds the coarsened fields (last year of each product) to the atlas's one dask
pass; :func:`section` draws the figures and returns the section (None without services products).
Figure functions return ``(figure, meta)`` like :mod:`~.maps` and :mod:`~.charts`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm

from . import basemap as bmod
from . import fields as fl
from . import maps
from .page import FigureEntry, Section, esc
from .style import OKABE_ITO, PERCENTILES, SEQ_CMAP, floats, new_figure, pretty_units

WIDTH = 7.2
EMISSION_CMAP = "inferno"
RATIO_CMAP = "RdBu_r"        # blue: capacity exceeds emission, red: emission exceeds capacity
FLOW_CMAP = "YlGnBu"
MATRIX_CMAP = SEQ_CMAP
ARROWS = 30                  # at most this many wind arrows along the longer side
TOP = 15                     # origins and destinations shown in the flow matrix
SECTORS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
_NORTH = np.array([1, 1, 0, -1, -1, -1, 0, 1])
_EAST = np.array([0, 1, 1, 1, 0, -1, -1, -1])
TERMS = {"e_people": "people", "e_livestock": "livestock", "e_energy": "energy",
         "e_wood": "wood", "e_cement": "cement", "e_landuse": "land use"}
TERM_COLORS = dict(zip(TERMS, (OKABE_ITO[k] for k in ("sky", "orange", "vermillion", "green",
                                                      "grey", "yellow"))))
FACTORS = {"population": "population", "gdp": "GDP", "lulc": "land use (primary class)",
           "elevation": "elevation", "tas": "air temperature", "pr": "precipitation"}
TYPES = {"nonlinear-weaken": "NL−", "uni-variable weaken": "U−", "bi-variable enhance": "B+",
         "independent": "ind", "nonlinear-enhance": "NL+", "undefined": "–"}
CATEGORICAL = ("lulc",)      # strata are class codes: no Pearson r
PRODUCTS = ("services_storage", "services_emission", "services_balance", "services_flow",
            "services_drivers")


# --- lazy fields ----------------------------------------------------------------------------------
def _ratio_map(bal, area, max_cells) -> fl.LazyMap:
    """E/C of each block: Σ E·A / Σ C·A over the cells where the ratio is defined (the product's
    own ratio where a block is one cell)."""
    ok = bal["ratio"].notnull()
    e, cap = (bal[v].isel(year=-1).where(ok.isel(year=-1)).astype("f8")
              for v in ("emission", "capacity"))
    factor = fl.coarsen_factor(e.shape, max_cells)
    parts = {"e": fl._block_sum(e * area, factor), "c": fl._block_sum(cap * area, factor),
             "a": fl._block_sum(area.where(e.notnull()), factor)}
    lat_edges, lon_edges, res = fl._edges(e, factor)

    def finish(v):
        num, den = np.asarray(v["e"], "f8"), np.asarray(v["c"], "f8")
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(den > 0, num / den, np.nan)
        return fl.MapField(values, lat_edges, lon_edges, units="1", factor=factor,
                           source_res=res, area=np.asarray(v["a"], "f8"))
    return fl.LazyMap(parts, finish)


def _arrow_map(sector, n_arrows=ARROWS) -> fl.LazyMap:
    """The prevailing downwind sector (modal over each block's cells; −1: none) at the centre of
    the block's cells with a sector, blocks of at most ``n_arrows`` along a side."""
    factor = fl.coarsen_factor(sector.shape, n_arrows)
    s, ok = sector.astype("i2"), (sector >= 0).astype("f8")
    parts = {f"s{k}": fl._block_sum((s == k).astype("f8"), factor) for k in range(8)}
    parts.update(lat=fl._block_sum(ok * sector.lat, factor),
                 lon=fl._block_sum(ok * sector.lon, factor))

    def finish(v):
        counts = np.stack([np.asarray(v[f"s{k}"], "f8") for k in range(8)])
        n = np.maximum(counts.sum(axis=0), 1)
        return {"lon": np.asarray(v["lon"]) / n, "lat": np.asarray(v["lat"]) / n,
                "sector": np.where(counts.sum(axis=0) > 0, np.argmax(counts, axis=0), -1),
                "block_cells": factor, "step_deg": fl.grid_of(sector).res * factor}
    return fl.LazyMap(parts, finish)


def lazy_fields(c, opened: dict, regions, max_cells: int) -> dict:
    """The section's lazy maps (last year of each product), keyed ``services:…``."""
    lazy = {}
    for key, name, var in (("storage", "services_storage", "c_total"),
                           ("emission", "services_emission", "e_total")):
        if name in c.products:
            ds = opened[name]
            lazy[f"services:{key}"] = fl.mean_map(ds[var].isel(year=-1),
                                                  fl.area_of(ds, regions), max_cells=max_cells)
    if "services_balance" in c.products:
        ds = opened["services_balance"]
        lazy["services:ratio"] = _ratio_map(ds, fl.area_of(ds, regions), max_cells)
    if "services_flow" in c.products:        # on the routing grid: its own cell areas
        ds = opened["services_flow"]
        area, thr = fl.area_of(ds, regions), ds["throughput"].isel(year=-1)
        lazy["services:throughput"] = fl.mean_map(thr.astype("f8") / (area * 1e-6), area,
                                                  max_cells=max_cells, units="t C km-2 yr-1")
        lazy["services:arrows"] = _arrow_map(ds["sector"].isel(year=-1).where(thr.notnull(), -1))
    return lazy


# --- maps -----------------------------------------------------------------------------------------
def _norm_map(bm, field, norm, cmap, *, title, cbar_label, kind, ticks=None, labels=None):
    """A map of ``field`` with any norm (log scales); the frame of :func:`maps.continuous_map`."""
    fig, rects, height = maps._layout(bm)
    ax = bmod.map_axes(fig, rects[0], bm)
    mesh = bmod.draw_field(ax, bm, field, cmap=cmap, norm=norm)
    ax.set_title(title, fontsize=10)
    inset = bmod.scs_inset(fig, ax, bm, field, cmap=cmap, norm=norm)
    cb = maps._colorbar(fig, mesh, height, cbar_label, maps._extend(field.values, norm))
    if ticks is not None:
        cb.set_ticks(ticks, labels=labels)
    meta = {"type": "map", "cmap": cmap, "norm": kind, "vmin": float(norm.vmin),
            "vmax": float(norm.vmax), "coarsen_factor": field.factor,
            "source_res_deg": field.source_res, "shape": list(field.shape),
            "cells_with_data": int(field.valid().size), "colorbar_label": cb.ax.get_xlabel(),
            **maps._frame(bm, inset)}
    return fig, ax, meta


def _range(v) -> dict:
    return {"field_min": float(v.min()) if v.size else None,
            "field_max": float(v.max()) if v.size else None}


def log_map(bm, field, *, title: str, quantity: str, cmap=EMISSION_CMAP,
            percentiles=PERCENTILES, arrows: dict | None = None):
    """A positive field on a log colour scale (limits: the ``percentiles`` of its positive cells;
    cells ≤ 0 left blank), optionally with arrows of the prevailing downwind sector."""
    vals = np.asarray(field.values, "f8")
    pos = dataclasses.replace(field, values=np.where(vals > 0, vals, np.nan))
    v = pos.valid()
    lo, hi = (np.percentile(v, percentiles) if v.size else (1.0, 10.0))
    lo, hi = float(lo), float(max(hi, lo * 10 ** 0.5))
    units = pretty_units(field.units)
    fig, ax, meta = _norm_map(bm, pos, LogNorm(lo, hi), cmap, title=title, kind="LogNorm",
                              cbar_label=f"{quantity} ({units}, log scale)")
    meta.update(units=units, limits_from={"percentiles": list(percentiles), "values": [lo, hi]},
                cells_not_positive=int(field.valid().size - v.size), **_range(v))
    if arrows is not None:
        meta["arrows"] = _draw_arrows(ax, bm, arrows)
    return fig, meta


def _draw_arrows(ax, bm, a: dict) -> dict:
    """Arrows along a routing step (one cell N, NE, …), all 0.6 blocks long on the map."""
    ok = a["sector"] >= 0
    k, lon, lat = a["sector"][ok], a["lon"][ok], a["lat"][ok]
    x0, y0 = bmod.project(bm.projection, lon, lat)
    x1, y1 = bmod.project(bm.projection, lon + 0.1 * _EAST[k], lat + 0.1 * _NORTH[k])
    dx, dy = x1 - x0, y1 - y0
    scale = 0.6 * a["step_deg"] * 111e3 / np.maximum(np.hypot(dx, dy), 1e-9)
    ax.quiver(x0, y0, dx * scale, dy * scale, angles="xy", scale_units="xy", scale=1.0,
              pivot="middle", width=0.0028, headwidth=4, headlength=4, headaxislength=3.5,
              color="black", edgecolor="white", linewidth=0.3, zorder=3)
    ax.text(0.01, 0.01, "arrows: prevailing downwind sector", transform=ax.transAxes,
            fontsize=7, zorder=7)
    return {"n": int(ok.sum()), "block_cells": a["block_cells"],
            "sector_counts": {s: int((k == i).sum()) for i, s in enumerate(SECTORS)}}


def ratio_map(bm, field, *, title: str, percentiles=PERCENTILES):
    """E/C on a log scale diverging around 1 (two slopes: the limits are the ``percentiles`` of
    log10 E/C, widened to reach at least ½ and 2)."""
    vals = np.asarray(field.values, "f8")
    with np.errstate(divide="ignore", invalid="ignore"):
        logv = np.where(vals > 0, np.log10(vals), np.nan)
    lf = dataclasses.replace(field, values=logv)
    lo, hi = maps.percentile_limits(lf.valid(), percentiles)
    norm = TwoSlopeNorm(0.0, min(lo, -0.30103), max(hi, 0.30103))    # at least ½ to 2
    ticks = [0.0]              # 1, and on each side ½ or 2, or up to 3 steps of whole decades
    for end in (norm.vmin, norm.vmax):
        step = max(1, int(np.ceil(abs(end) / 3)))
        ticks += [np.sign(end) * k for k in range(step, int(abs(end)) + 1, step)] or \
            [np.sign(end) * 0.30103]
    fig, _, meta = _norm_map(bm, lf, norm, RATIO_CMAP, title=title, kind="log10 TwoSlopeNorm",
                             cbar_label="emission / capacity E/C (1, log scale)", ticks=ticks,
                             labels=[f"{10 ** t:.2g}" for t in ticks])
    ok = np.isfinite(vals)
    area = np.where(ok, np.asarray(field.area, "f8"), 0.0)
    meta.update(units="1", vcenter=1.0, vmin=float(10 ** norm.vmin), vmax=float(10 ** norm.vmax),
                limits_from={"percentiles": list(percentiles), "values": [10 ** lo, 10 ** hi],
                             "of": "log10 E/C"}, **_range(vals[ok]),
                area_above_1_pct=float(100 * area[ok & (vals > 1)].sum() / area.sum())
                if area.sum() > 0 else None)
    return fig, meta


# --- charts ---------------------------------------------------------------------------------------
def _cbar(fig, mesh, rect, text):
    cb = fig.colorbar(mesh, cax=fig.add_axes(rect))
    cb.set_label(text, fontsize=8)
    cb.ax.tick_params(labelsize=7)


def flow_matrix(matrix: pd.DataFrame, year: int, *, top: int = TOP):
    """Heatmap of the routed surplus (t C a⁻¹) from origin regions to destinations (regions, the
    domain's edges, unabsorbed) in ``year``: the ``top`` origins and destinations by mass."""
    m = matrix[matrix["year"] == year]
    total = float(m["mass_t"].sum())
    origins = list(m.groupby("origin")["mass_t"].sum().nlargest(top).index)
    dests = list(m.groupby("destination")["mass_t"].sum().nlargest(top).index)
    grid = (m.pivot_table(index="origin", columns="destination", values="mass_t", aggfunc="sum")
            .reindex(index=origins, columns=dests))
    vals = grid.to_numpy("f8")
    pos = vals[np.isfinite(vals) & (vals > 0)]
    fig = new_figure((WIDTH, 1.9 + 0.26 * max(len(origins), 4)))
    h = fig.get_figheight()
    ax = fig.add_axes([0.28, 1.45 / h, 0.6, 1 - 1.95 / h])
    norm = LogNorm(float(max(pos.min(), pos.max() * 1e-5)), float(pos.max())) if pos.size \
        else LogNorm(1.0, 10.0)     # at most 5 decades: masses below in the lowest colour
    mesh = ax.pcolormesh(np.where(vals > 0, vals, np.nan), cmap=MATRIX_CMAP, norm=norm,
                         edgecolors="0.85", linewidth=0.3, rasterized=True)
    ax.set_xticks(np.arange(len(dests)) + 0.5, dests, rotation=50, ha="right", fontsize=7)
    ax.set_yticks(np.arange(len(origins)) + 0.5, origins, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("destination (absorbed in the region, exported across an edge, unabsorbed)",
                  fontsize=8)
    ax.set_ylabel("origin of the surplus", fontsize=8)
    shown = float(np.nansum(vals))
    ax.set_title(f"routed surplus emission {year}: top {len(origins)} origins × top "
                 f"{len(dests)} destinations ({100 * shown / total if total else 0:.1f} % of "
                 "the mass)", fontsize=9)
    _cbar(fig, mesh, [0.9, 1.45 / h, 0.02, 1 - 1.95 / h], "mass (t C a⁻¹, log scale)")
    return fig, {"type": "flow_matrix", "year": year, "units": "t C a⁻¹", "origins": origins,
                 "destinations": dests, "mass_t": [floats(r) for r in vals],
                 "total_mass_t": total, "shown_mass_t": shown, "norm": "LogNorm",
                 "vmin": float(norm.vmin), "vmax": float(norm.vmax)}


def emission_terms(table: pd.DataFrame, year: int, *, source: str):
    """Stacked bars of each province's emission by term in ``year`` (Tg C a⁻¹), from
    emission_totals.csv (``source="totals"``) or inventory.csv (``"inventory"``, no land use)."""
    if source == "totals":
        t = table[(table.region_set == "province") & (table.year == year)
                  & table.term.isin(list(TERMS))]
        wide = t.pivot_table(index="region", columns="term", values="total_tg", sort=False)
    else:
        t = table[table.year == year].set_index("province")
        wide = pd.DataFrame({k: t[f"{k}_t"] * 1e-6 for k in TERMS if f"{k}_t" in t})
    wide = wide[[k for k in TERMS if k in wide]].fillna(0.0)
    wide = wide.loc[wide.sum(axis=1).sort_values().index]
    fig = new_figure((WIDTH, 1.3 + 0.19 * max(len(wide), 5)))
    h = fig.get_figheight()
    ax = fig.add_axes([0.2, 0.75 / h, 0.55, 1 - 1.2 / h])
    pos, neg = np.zeros(len(wide)), np.zeros(len(wide))
    bars: dict = {}
    for term in wide.columns:
        x = wide[term].to_numpy("f8")
        left = np.where(x >= 0, pos, neg)
        cont = ax.barh(list(wide.index), x, left=left, color=TERM_COLORS[term], height=0.75,
                       label=TERMS[term], edgecolor="white", linewidth=0.3)
        for r, p in zip(wide.index, cont.patches):
            bars.setdefault(r, {})[term] = float(p.get_width())
        pos, neg = pos + np.maximum(x, 0), neg + np.minimum(x, 0)
    ax.axvline(0.0, color="0.4", lw=0.6)
    ax.set_xlabel("carbon emission (Tg C a⁻¹)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="x", alpha=0.3, lw=0.5)
    ax.set_ylim(-0.6, len(wide) - 0.4)
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5),
              title="term", title_fontsize=7)
    ax.set_title(f"carbon emission by term and province, {year}", fontsize=9)
    return fig, {"type": "stacked_bars", "year": year, "units": "Tg C a⁻¹",
                 "source": source, "bars": bars}


def driver_bars(geo: pd.DataFrame, pearson: pd.DataFrame | None, year: int):
    """Geodetector q of each factor (solid: p < 0.05) and, beside it, Pearson r of the balance
    C − E with the factor (* p < 0.05), in ``year``."""
    g = geo[geo.year == year].sort_values("q")
    names = [FACTORS.get(f, f) for f in g.factor]
    fig = new_figure((WIDTH, 1.3 + 0.32 * max(len(g), 4)))
    h = fig.get_figheight()
    ax0 = fig.add_axes([0.27, 0.6 / h, 0.32, 1 - 1.05 / h])
    ax1 = fig.add_axes([0.64, 0.6 / h, 0.32, 1 - 1.05 / h], sharey=ax0)
    sig = g.p.to_numpy("f8") < 0.05
    cont = ax0.barh(names, g.q.to_numpy("f8"), height=0.7,
                    color=[OKABE_ITO["blue"] if s else "#bcd7ea" for s in sig])
    ax0.set_xlim(0, max(0.05, float(np.nanmax(np.append(g.q.to_numpy("f8"), 0))) * 1.15))
    ax0.set_xlabel("Geodetector q (1)", fontsize=8)
    ax0.set_title("factor detector (light: p ≥ 0.05)", fontsize=8)
    meta = {"type": "driver_bars", "year": year,
            "q": {f: float(p.get_width()) for f, p in zip(g.factor, cont.patches)},
            "q_p": dict(zip(g.factor, floats(g.p)))}
    if pearson is not None and len(pearson):
        r = pearson[pearson.year == year].set_index("factor").reindex(g.factor)
        rv = np.where(g.factor.isin(CATEGORICAL), np.nan, r["r"].to_numpy("f8"))
        cont = ax1.barh(names, np.nan_to_num(rv), height=0.7,
                        color=np.where(rv >= 0, OKABE_ITO["green"], OKABE_ITO["vermillion"]))
        for p, f, pv, v in zip(cont.patches, g.factor, r["p"].to_numpy("f8"), rv):
            yc = p.get_y() + p.get_height() / 2
            if f in CATEGORICAL:
                ax1.annotate("categorical", (0.02, yc), fontsize=6, va="center", color="0.4")
            elif pv < 0.05:
                ax1.annotate("*", (v, yc), fontsize=9, ha="left" if v >= 0 else "right",
                             va="center")
        ax1.set_xlim(-1.05, 1.05)
        ax1.axvline(0.0, color="0.4", lw=0.6)
        meta["r"] = dict(zip(g.factor, floats(rv)))
        meta["r_p"] = dict(zip(g.factor, floats(r["p"])))
    ax1.set_xlabel("Pearson r with C − E (1)", fontsize=8)
    ax1.set_title("correlation (* p < 0.05)", fontsize=8)
    ax1.tick_params(labelleft=False)
    for ax in (ax0, ax1):
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3, lw=0.5)
    fig.suptitle(f"drivers of the balance capacity − emission, {year}", fontsize=10)
    return fig, meta


def interaction_matrix(inter: pd.DataFrame, geo: pd.DataFrame, year: int):
    """q of each pair of factors' overlaid strata (diagonal: the factor's own q), each pair
    labelled with its interaction type."""
    g = geo[geo.year == year]
    facs = list(g.factor)
    n = len(facs)
    q = np.full((n, n), np.nan)
    types = np.full((n, n), "", dtype=object)
    idx = {f: i for i, f in enumerate(facs)}
    q[np.arange(n), np.arange(n)] = g.q.to_numpy("f8")
    for r in inter[(inter.year == year) & inter.factor1.isin(facs)
                   & inter.factor2.isin(facs)].itertuples():
        i, j = idx[r.factor1], idx[r.factor2]
        q[i, j] = q[j, i] = float(r.q12)
        types[i, j] = types[j, i] = str(r.type)
    side = 0.55 * max(n, 3)
    fig = new_figure((2.0 + side + 0.9, 1.6 + side))
    h, w = fig.get_figheight(), fig.get_figwidth()
    ax = fig.add_axes([1.9 / w, 1.3 / h, side / w, side / h])
    mesh = ax.pcolormesh(q, cmap=SEQ_CMAP, norm=Normalize(0.0, 1.0), edgecolors="white",
                         linewidth=0.6)
    for i in range(n):
        for j in range(n):
            if np.isfinite(q[i, j]):
                tag = "q" if i == j else TYPES.get(types[i, j], types[i, j])
                ax.text(j + 0.5, i + 0.5, f"{q[i, j]:.2f}\n{tag}", ha="center", va="center",
                        fontsize=6.5, color="white" if q[i, j] < 0.6 else "black")
    names = [FACTORS.get(f, f) for f in facs]
    ax.set_xticks(np.arange(n) + 0.5, names, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(np.arange(n) + 0.5, names, fontsize=7)
    ax.invert_yaxis()
    _cbar(fig, mesh, [(1.9 + side + 0.15) / w, 1.3 / h, 0.12 / w, side / h], "q (1)")
    fig.text(0.5, 0.02, "  ".join(f"{v}: {k}" for k, v in TYPES.items() if k != "undefined"),
             fontsize=6, ha="center")
    ax.set_title(f"interaction detector, {year}", fontsize=9)
    return fig, {"type": "interaction_matrix", "year": year, "factors": facs,
                 "q": [floats(r) for r in q], "types": [list(r) for r in types]}


# --- the section ----------------------------------------------------------------------------------
def _summary(tables) -> tuple[pd.DataFrame | None, list[str]]:
    """The study area's totals (table) and the same in sentences."""
    rows, text = [], []
    st = tables.get(("services_storage", "storage_totals.csv"))
    if st is not None:
        d = st[(st.region_set == "domain") & (st.pool == "c_total")].sort_values("year")
        d = d.iloc[[0, -1]].drop_duplicates()
        rows += [("carbon storage (all pools)", int(r.year), r.total_tg_c, "Tg C")
                 for r in d.itertuples()]
        if len(d):
            text.append(f"Carbon storage {' → '.join(f'{v:,.0f}' for v in d.total_tg_c)} Tg C "
                        f"({'–'.join(str(y) for y in d.year)}).")
    bal = tables.get(("services_balance", "balance.csv"))
    if bal is not None and len(bal):
        r = bal[(bal.region_set == "domain") & (bal.year == bal.year.max())].iloc[0]
        cu = "Tg C a⁻¹" if r.capacity == "sequestration" else "Tg C"
        rows += [(what, int(r.year), r[col], u) for col, what, u in (
            ("emission_tg", "emission E counted against the capacity", "Tg C a⁻¹"),
            ("capacity_tg", f"capacity C ({r.capacity})", cu), ("ratio", "ratio ΣE / ΣC", "1"),
            ("flow_tg", "flow min(ΣE, ΣC)", "Tg C a⁻¹"),
            ("flow_cells_tg", "Σ of the cells' flows min(E, C)", "Tg C a⁻¹"))]
        text.append(f"In {int(r.year)} the emission E = {r.emission_tg:,.1f} Tg C a⁻¹ against a "
                    f"capacity C = {r.capacity_tg:,.1f} {cu} ({r.capacity}): ΣE/ΣC = "
                    f"{r.ratio:.3g}.")
    rt = tables.get(("services_flow", "routing.csv"))
    if rt is not None and len(rt):
        r = rt.sort_values("year").iloc[-1]
        shares = {what: 100 * v / r.surplus_t if r.surplus_t > 0 else np.nan for what, v in (
            ("absorbed downwind", r.absorbed_t), ("unabsorbed", r.unabsorbed_t),
            ("exported from the domain", sum(r.get(f"exported_{e}_t", 0.0) for e in "NESW")))}
        rows.append(("surplus emission routed downwind", int(r.year), r.surplus_t * 1e-6,
                     "Tg C a⁻¹"))
        rows += [(f"{w} (share of the surplus)", int(r.year), v, "%") for w, v in shares.items()]
        text.append(f"Of the {r.surplus_t * 1e-6:,.1f} Tg C a⁻¹ surplus routed downwind in "
                    f"{int(r.year)}, " + ", ".join(f"{v:.1f} % {w}" for w, v in shares.items())
                    + ".")
    geo = tables.get(("services_drivers", "geodetector.csv"))
    if geo is not None and len(geo):
        g = geo[geo.year == geo.year.max()].sort_values("q", ascending=False).iloc[0]
        text.append(f"The factor that explains most of the balance C − E in {int(g.year)} is "
                    f"{FACTORS.get(g.factor, g.factor)}, Geodetector q = {g.q:.2f}.")
    table = pd.DataFrame(rows, columns=["quantity", "year", "value", "unit"]) if rows else None
    return table, text


def section(atlas, bm, c, fields: dict, tables: dict, opened: dict) -> Section | None:
    """The carbon-sequestration services section (None when the run has no services product)."""
    src = {n: f"{p.key}@{p.version}" for n, p in c.products.items() if n in PRODUCTS}
    if not src:
        return None
    dom = bm.label
    bal = opened.get("services_balance")
    how = bal.attrs.get("capacity_definition", "") if bal is not None else ""
    sec = Section("services", "Carbon-sequestration services",
                  "Carbon storage (InVEST carbon model), the emission inventory spread from "
                  "province statistics, their balance (ratio E/C), the surplus routed downwind "
                  "onto spare capacity and the drivers of the balance (SCIENCE.md §7)."
                  + (f" Capacity: {esc(how)}." if how else ""))
    summary, text = _summary(tables)
    if text:
        sec.blocks.append(("html", f'<p class="summary">{esc(" ".join(text))}</p>'))
    atlas.table(sec, f"services: {dom}, the study area", summary, name="services_summary.csv")

    def add(product, fig_id, title, caption, made, **extra):
        atlas.add(sec, fig_id, title, f"{caption} Source {src[product]}.", made,
                  product=product, **extra)
    if "services:storage" in fields:
        y = int(opened["services_storage"].year[-1])
        add("services_storage", "services_storage_map", f"carbon storage {y}",
            f"Total carbon storage c_total {y} (aboveground + belowground + soil + dead organic "
            f"matter pools of the land use, InVEST carbon model) per cell, {dom}, t C ha⁻¹. "
            "Colour limits: 2nd–98th percentiles of the mapped cells.",
            maps.continuous_map(bm, fields["services:storage"], title=f"total carbon storage "
                                f"{y}, {dom}", quantity="carbon storage", cmap=SEQ_CMAP),
            variable="c_total", year=y)
    if "services:emission" in fields:
        y = int(opened["services_emission"].year[-1])
        add("services_emission", "services_emission_map", f"carbon emission {y}",
            f"Total carbon emission e_total {y} (people, livestock, energy, wood, cement and "
            f"land use) per cell, {dom}, t C km⁻² a⁻¹ on a log colour scale (limits: 2nd–98th "
            "percentiles of the positive cells; cells without emission blank).",
            log_map(bm, fields["services:emission"], title=f"carbon emission {y}, {dom}",
                    quantity="carbon emission"), variable="e_total", year=y)
    if "services:ratio" in fields:
        y = int(bal.year[-1])
        add("services_balance", "services_ratio_map", f"emission / capacity {y}",
            f"Ratio E/C of emission to capacity ({bal.attrs.get('capacity', '')}) {y}, {dom}, "
            "on a log scale diverging around 1: red where the emission exceeds the capacity, "
            "blue where the capacity exceeds it; blocks show ΣE·A / ΣC·A; blank where C = 0.",
            ratio_map(bm, fields["services:ratio"], title=f"emission / capacity E/C {y}, {dom}"),
            variable="ratio", year=y)
    if "services:throughput" in fields:
        flow = opened["services_flow"]
        y, res = int(flow.year[-1]), flow.attrs.get("routing_resolution_deg", "")
        add("services_flow", "services_flow_map", f"flow paths of the surplus emission {y}",
            f"Throughput {y}: surplus emission routed downwind through each cell of the "
            f"{res}° routing grid, per km² (t C km⁻² a⁻¹, log scale; blank: no flow), with "
            "arrows of the prevailing downwind sector of the year (modal sector of the cells "
            "under each arrow).",
            log_map(bm, fields["services:throughput"], title=f"flow paths of the surplus "
                    f"emission {y}, {dom}", quantity="throughput", cmap=FLOW_CMAP,
                    arrows=fields.get("services:arrows")),
            variable="throughput", year=y, routing_resolution_deg=res)
    fm = tables.get(("services_flow", "flow_matrix.csv"))
    if fm is not None and len(fm):
        y = int(fm.year.max())
        add("services_flow", "services_flow_matrix", f"region flow matrix {y}",
            f"Surplus emission of each origin region absorbed in each destination region, "
            f"exported across an edge of the domain or left unabsorbed, {y} (t C a⁻¹, log "
            f"scale); the {TOP} origins and destinations with the most mass. Table "
            "flow_matrix.csv.", flow_matrix(fm, y), year=y)
    et = tables.get(("services_emission", "emission_totals.csv"))
    inv = tables.get(("services_emission", "inventory.csv"))
    use = ("totals", et, "emission_totals.csv") if et is not None and \
        (et.region_set == "province").any() else ("inventory", inv, "inventory.csv")
    if use[1] is not None and len(use[1]):
        y, tname = int(use[1].year.max()), use[2]
        made = emission_terms(use[1], y, source=use[0])
        add("services_emission", "services_emission_terms", f"emission by term and province {y}",
            f"Carbon emission of each province by term, {y} (Tg C a⁻¹, true cell areas). "
            f"Table {tname}.", made, year=y)
    geo = tables.get(("services_drivers", "geodetector.csv"))
    if geo is not None and len(geo):
        y = int(geo.year.max())
        pear = tables.get(("services_drivers", "pearson.csv"))
        add("services_drivers", "services_drivers_q", f"drivers of the balance {y}",
            f"Geodetector q (share of the variance of capacity − emission explained by the "
            f"factor's strata) and Pearson r of capacity − emission with each factor, {y}. "
            "Tables geodetector.csv, pearson.csv.", driver_bars(geo, pear, y), year=y)
        inter = tables.get(("services_drivers", "interaction.csv"))
        if inter is not None and len(inter):
            add("services_drivers", "services_drivers_interaction",
                f"interactions of the drivers {y}",
                f"q of the overlay of each pair of factors' strata (diagonal: the factor alone) "
                f"and the interaction type, {y}: NL+ nonlinear-enhance, B+ bi-variable "
                "enhance, ind independent, U− uni-variable weaken, NL− nonlinear-weaken. Table "
                "interaction.csv.", interaction_matrix(inter, geo, y), year=y)
    atlas.table(sec, "balance of every region and year",
                tables.get(("services_balance", "balance.csv")), open_=False,
                name="services_balance.csv")
    atlas.table(sec, "Geodetector factor detector", geo, open_=False)
    return sec if any(isinstance(b, FigureEntry) for b in sec.blocks) or text else None
