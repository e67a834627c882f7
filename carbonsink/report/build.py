"""Build the atlas of a run: :func:`build_report` (see the package doc)."""
from __future__ import annotations

import json
import logging
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..io.names import validate_prefix
from ..io.store import Published, Store
from ..zonal import period_summary
from . import basemap as bmod
from . import charts, comparison, maps, scenarios, services
from .contents import (
    Contents,
    configurations,
    datasets_table,
    discover,
    input_sources,
    is_synthetic,
    read_table,
    role_of,
)
from .fields import (
    MAX_CELLS,
    area_of,
    class_map,
    compute_fields,
    fraction_map,
    mean_map,
)
from .page import FigureEntry, Section, esc, kv_html, render, scrub, table_html
from .style import CHANGE_COLORS, FACTOR_COLORS, TREND_CMAP, label

log = logging.getLogger("carbonsink")

DPI = 120
MANIFEST = "figures.json"
HTML = "index.html"
QUANTITY = {"nep": "NEP", "ecosystem_sink": "ecosystem sink", "ccs": "CCS"}
CV_DETAIL = ("ionic_strength_cv_predictions.csv", "ionic_strength_cv_folds.csv")
SHARES = (("share_pr", "precipitation"), ("share_tas", "temperature"),
          ("share_rsds", "solar radiation"), ("share_ha", "human activity"))


def basemap_of(record: dict) -> bmod.Basemap:
    return bmod.Basemap(str(record.get("domain", "china")),
                        str(record.get("domain_name", "China")),
                        tuple(float(x) for x in record.get("grid_bbox", (73.0, 17.0, 136.0, 54.0))))


def _years(p: Published) -> str:
    y = p.record.get("years") or []
    return f"{y[0]}–{y[1]}" if len(y) == 2 else ""


def _source(p: Published) -> str:
    return f"{p.key}@{p.version}"


def _coarse_note(meta: dict) -> str:
    f = meta.get("coarsen_factor", 1)
    if not f or f <= 1:
        return ""
    block = meta.get("source_res_deg", 0) * f
    return f" Drawn from {f}×{f}-cell area-weighted block means ({block:g}°)."


class Atlas:
    """One atlas being written: figures saved as PNG + SVG, their manifest entries, the page."""

    def __init__(self, out: Path):
        self.out = out
        self.figures: list[FigureEntry] = []
        (out / "figures").mkdir(parents=True, exist_ok=True)
        (out / "tables").mkdir(parents=True, exist_ok=True)

    def add(self, section: Section, fig_id: str, title: str, caption: str, made, **extra):
        fig, meta = made
        t = time.perf_counter()
        png, svg = self.out / "figures" / f"{fig_id}.png", self.out / "figures" / f"{fig_id}.svg"
        fig.savefig(png, dpi=DPI, facecolor="white")
        fig.savefig(svg, facecolor="white")
        data = png.read_bytes()
        w, h = struct.unpack(">II", data[16:24])   # the PNG's IHDR: what the browser shows
        if meta.get("type") in ("map", "class_map", "panel_maps"):
            caption += _coarse_note(meta)
        entry = FigureEntry(fig_id, section.id, title, caption, f"figures/{png.name}",
                            f"figures/{svg.name}", data, w, h,
                            {**meta, **extra, "render_s": round(time.perf_counter() - t, 3)})
        self.figures.append(entry)
        section.blocks.append(entry)
        fig.clear()
        return entry

    def table(self, section: Section, caption: str, df: pd.DataFrame | None, *, name: str = "",
              open_: bool = True, **kw):
        if df is None or not len(df):
            return
        link = ""
        if name:
            df.to_csv(self.out / "tables" / name, index=False)
            link = f' <a href="tables/{esc(name)}">(CSV)</a>'
        section.blocks.append(("table", caption, table_html(df, **kw) + link, open_))


# --- lazy fields ----------------------------------------------------------------------------------
def _lazy_fields(c: Contents, opened: dict, regions, max_cells: int) -> dict:
    lazy = {}
    for name in c.products:
        role = role_of(name)
        if role in ("services", "scenarios"):     # their lazy_fields below
            continue
        ds = opened[name]
        area = area_of(ds, regions)
        if role == "nep":
            lazy[f"{name}:mean"] = mean_map(ds["nep"], area, max_cells=max_cells)
        elif role == "sink":
            lazy[f"{name}:mean"] = mean_map(ds["ecosystem_sink"], area, max_cells=max_cells)
        elif role == "karst":
            lazy[f"{name}:mean"] = mean_map(ds["ccs"], area, max_cells=max_cells,
                                            where=ds["carbonate_fraction"] > 0)
        elif role == "trends":
            lazy[f"{name}:slope"] = mean_map(ds["slope"], area, max_cells=max_cells)
            lazy[f"{name}:sig"] = fraction_map(ds["p_value"] < 0.05, ds["p_value"].notnull(),
                                               area, max_cells=max_cells)
            lazy[f"{name}:class"] = class_map(ds["change_class"], area, max_cells=max_cells)
        elif role == "attribution":
            lazy[f"{name}:dominant"] = class_map(ds["dominant_factor"], area,
                                                 max_cells=max_cells)
            for var, _ in SHARES:
                if var in ds:
                    lazy[f"{name}:{var}"] = mean_map(ds[var], area, max_cells=max_cells)
    for i, comp in enumerate(c.comparisons):
        summary = opened[f"compare:{i}"]
        for pname in comp.products:
            ds = opened[f"compare:{i}:{pname}"]
            da = ds["ensemble_mean"] if "ensemble_mean" in ds else ds["sink"]
            annual = (da * 12.0).assign_attrs(units="g m-2 yr-1",
                                              long_name="mean annual net land sink")
            lazy[f"compare:{i}:{pname}"] = mean_map(annual, area_of(ds, summary),
                                                    max_cells=max_cells)
    lazy.update(services.lazy_fields(c, opened, regions, max_cells))
    lazy.update(scenarios.lazy_fields(c, opened, regions, max_cells))
    return lazy


def _open_all(store: Store, c: Contents) -> dict:
    opened = {n: store.open(p.kind, p.name, p.version) for n, p in c.products.items()}
    for i, comp in enumerate(c.comparisons):
        opened[f"compare:{i}"] = store.open("products", comp.summary.name, comp.summary.version)
        for pname, p in comp.products.items():
            opened[f"compare:{i}:{pname}"] = store.open(p.kind, p.name, p.version)
    return opened


# --- sections -------------------------------------------------------------------------------------
def _flux_section(atlas, sec, bm, c, name, p, fields, tables):
    role = role_of(name)
    var = {"nep": "nep", "sink": "ecosystem_sink", "karst": "ccs"}[role]
    years, dom = _years(p), bm.label
    if role == "nep":
        rh = p.record.get("content_address", {}).get("params", {}).get("rh_model", "")
        what = f"NEP = NPP − Rh (Rh model {rh})" if rh else "NEP = NPP − Rh"
    elif role == "sink":
        what = "ecosystem carbon sink = NEP + CCS"
    else:
        what = "karst carbonate-weathering sink CCS over carbonate rock"
    mf = fields[f"{name}:mean"]
    atlas.add(sec, f"{name}_mean_map", f"{name}: {what}, mean {years}",
              f"Mean {years} of {QUANTITY[var]} per cell, {dom}; positive = uptake by the land. "
              f"Colour limits: 2nd–98th percentiles of the mapped cells. Source {_source(p)}.",
              maps.continuous_map(bm, mf, title=f"{what}\nmean {years}, {dom}",
                                  quantity=f"mean {QUANTITY[var]}", diverging=role != "karst"),
              product=name, variable=var)
    totals = tables.get((name, "totals.csv"))
    if totals is not None:
        over = " over carbonate rock" if role == "karst" else ""
        atlas.add(sec, f"{name}_totals_timeseries", f"{name}: totals{over} through time",
                  f"Annual totals{over} (Tg C a⁻¹, true cell areas) of {dom} and its regions, "
                  f"with OLS trends (dashed; * p < 0.05). Table {_source(p)} totals.csv.",
                  charts.totals_timeseries(totals, title=f"{name}: {QUANTITY[var]} total{over}",
                                           quantity=f"{QUANTITY[var]} total"), product=name)
        summary = period_summary(totals)
        if (summary.region_set != "domain").any():
            atlas.add(sec, f"{name}_regional_totals", f"{name}: regional totals{over}",
                      f"Mean annual totals {years}{over} by region (± s.d. across years).",
                      charts.regional_bars(summary, title=f"{name}: mean {QUANTITY[var]} "
                                           f"total {years}{over}",
                                           quantity=f"{QUANTITY[var]} total"), product=name)
        small = summary[summary.region_set.isin(["domain", *charts._small_sets(totals)])]
        atlas.table(sec, f"{name}: period means {years}{over}", _readable(small),
                    name=f"{name}_period_summary.csv")
        rest = summary[~summary.index.isin(small.index)]
        atlas.table(sec, f"{name}: every other region", _readable(rest), open_=False)
    if role == "karst":
        _karst_model(atlas, sec, name, p, tables)


def _karst_model(atlas, sec, name, p, tables):
    model = p.record.get("ionic_strength_model")
    cv = tables.get((name, "ionic_strength_cv.csv"))
    if model is None and cv is not None and len(cv) == 1:
        model = cv.iloc[0].to_dict()
    # out-of-fold predictions or per-fold scores, where the product publishes them
    points = next((t for t in (*(tables.get((name, s)) for s in CV_DETAIL), cv)
                   if t is not None and any(charts._cv_columns(t)[i] for i in (0, 2))), None)
    if model is None:
        return
    warn = p.record.get("ionic_strength_model_warning")
    if warn:
        sec.blocks.append(("html", f'<p class="warning">{esc(warn)}</p>'))
    atlas.add(sec, f"{name}_random_forest", f"{name}: ionic-strength random forest",
              "Cross-validation of the random forest that predicts the ionic strength I of "
              "soil/river water from annual precipitation, temperature, AET and NPP (trained on "
              "river chemistry), and the predictors' importances. Source "
              f"{_source(p)} ionic_strength_cv.csv and its record.",
              charts.random_forest(points if points is not None else pd.DataFrame(), model,
                                   title=f"{name}: ionic-strength random forest"), product=name)
    atlas.table(sec, "random forest: scores and settings",
                pd.DataFrame({"setting": list(model), "value": [str(v) for v in model.values()]}),
                open_=False)


def _share_pivot(df: pd.DataFrame, sets) -> pd.DataFrame:
    rows = df[df.region_set.isin(["domain", *sets])]
    out = rows.pivot_table(index=["region_set", "region"], columns="category",
                           values="share_pct", sort=False)
    out.columns = [f"{label(c)} (%)" for c in out.columns]
    return _readable(out.reset_index())


def _trends_section(atlas, sec, bm, name, p, fields, tables):
    var = p.record.get("variable", name.removeprefix("trends_"))
    q, years, dom = QUANTITY.get(var, var), _years(p), bm.label
    atlas.add(sec, f"{name}_slope_map", f"{name}: trend of {q} {years}",
              f"OLS slope of annual {q} per cell, {dom}; dots where the t-test gives p < 0.05 "
              f"(for most of the dot's area). Source {_source(p)}.",
              maps.continuous_map(bm, fields[f"{name}:slope"], title=f"trend of {q} {years}, "
                                  f"{dom}", quantity=f"OLS slope of {q}", diverging=True,
                                  cmap=TREND_CMAP, stipple=fields[f"{name}:sig"]),
              product=name, variable="slope")
    atlas.add(sec, f"{name}_change_classes", f"{name}: change classes of {q}",
              f"Change classes of {q} {years} (significance of the trend at α = 0.05). "
              f"Source {_source(p)}.",
              maps.class_map(bm, fields[f"{name}:class"], title=f"change classes of {q} "
                             f"{years}, {dom}", colors=CHANGE_COLORS, legend_title="class"),
              product=name, variable="change_class")
    areas = tables.get((name, "change_areas.csv"))
    if areas is not None:
        atlas.add(sec, f"{name}_change_areas", f"{name}: areas of the change classes",
                  f"Areas of the change classes of {q}: the study area and its regions. Table "
                  f"{_source(p)} change_areas.csv.",
                  charts.category_areas(areas, title=f"{name}: change classes of {q}",
                                        kind="change"), product=name)
        atlas.table(sec, f"{name}: change classes (share of each region's area)",
                    _share_pivot(areas, charts._small_sets(areas)),
                    name=f"{name}_change_areas.csv")
    incdec = tables.get((name, "increase_decrease_areas.csv"))
    if incdec is not None:
        atlas.table(sec, f"{name}: increasing and decreasing areas", _readable(incdec),
                    open_=False)


def _attribution_section(atlas, sec, bm, name, p, fields, tables):
    var = p.record.get("variable", name.removeprefix("attribution_"))
    q, years, dom = QUANTITY.get(var, var), _years(p), bm.label
    atlas.add(sec, f"{name}_dominant_map", f"{name}: dominant factor of the trend of {q}",
              f"The factor with the largest contribution to each cell's trend of {q} {years} "
              f"(partial derivatives on detrended series). Source {_source(p)}.",
              maps.class_map(bm, fields[f"{name}:dominant"], title=f"dominant factor of the "
                             f"trend of {q} {years}, {dom}", colors=FACTOR_COLORS,
                             legend_title="factor"),
              product=name, variable="dominant_factor")
    shares = {title: fields[f"{name}:{v}"] for v, title in SHARES if f"{name}:{v}" in fields}
    if shares:
        atlas.add(sec, f"{name}_shares_maps", f"{name}: relative contributions",
                  f"Relative contribution (%) of precipitation, temperature, solar radiation and "
                  f"human activity to the trend of {q} {years}. Source {_source(p)}.",
                  maps.shares_maps(bm, shares, title=f"relative contributions to the trend of "
                                   f"{q} {years}"), product=name)
    areas = tables.get((name, "dominant_areas.csv"))
    if areas is not None:
        atlas.add(sec, f"{name}_dominant_areas", f"{name}: area by dominant factor",
                  f"Share of the area where each factor dominates the trend of {q}: the study "
                  f"area (pie) and its regions. Table {_source(p)} dominant_areas.csv.",
                  charts.category_areas(areas, title=f"{name}: dominant factor of the trend "
                                        f"of {q}", kind="dominant"), product=name)
        atlas.table(sec, f"{name}: dominant factor (share of each region's area)",
                    _share_pivot(areas, charts._small_sets(areas)),
                    name=f"{name}_dominant_areas.csv")


def _comparison_section(atlas, sec, i, comp, fields, tables):
    s = comp.summary
    bm = basemap_of(s.record)
    ref = s.record.get("reference", "")
    prods = {n: fields[f"compare:{i}:{n}"] for n in comp.products
             if f"compare:{i}:{n}" in fields}
    if prods:
        atlas.add(sec, f"{s.name}_maps", "compared products: mean annual net land sink",
                  f"Mean annual net land sink {_years(s)} of each product on the comparison grid "
                  "(ensembles: the ensemble mean); positive = uptake by the land.",
                  maps.panel_maps(bm, prods, title=f"mean annual net land sink {_years(s)}",
                                  quantity="net land sink", ncols=3, diverging=True),
                  product=s.name)
    for suffix, fn, title, cap in (
            ("totals.csv", comparison.annual_totals, "annual totals",
             ("Annual net land sink of the study area (Pg C a⁻¹); ensembles: mean and min–max "
              "of the members.")),
            ("seasonal_cycle.csv", comparison.seasonal_cycle, "mean seasonal cycle",
             "Mean seasonal cycle of the study area's net land sink (Tg C month⁻¹)."),
            ("zonal_means.csv", comparison.zonal_means, "zonal means (latitude × month)",
             ("Zonal means of the net land sink by latitude and calendar month, mean over the "
              "years (g C m⁻² month⁻¹).")),
            ("metrics.csv", comparison.taylor_diagram, "Taylor diagram",
             (f"Correlation and normalised standard deviation of each product's monthly fields "
              f"against {ref} over the study area; grey arcs: normalised centred RMS "
              "difference."))):
        t = tables.get((s.name, suffix))
        if t is not None and len(t):
            atlas.add(sec, f"{s.name}_{suffix.removesuffix('.csv')}", f"comparison: {title}",
                      f"{cap} Table {_source(s)} {suffix}.", fn(t), product=s.name)
    metrics = tables.get((s.name, "metrics.csv"))
    if metrics is not None:
        m = comparison.main_rows(metrics)
        m = m[m.region_set == "domain"]
        cols = [c for c in ("product", "kind", "bias", "rmse", "correlation", "sd_ratio",
                            "bias_score", "rmse_score", "phase_score", "iav_score",
                            "taylor_score", "overall_score") if c in m]
        atlas.table(sec, f"scores against {ref} (ILAMB; 1 = identical), study area",
                    m[cols], name=f"{s.name}_scores.csv", floatfmt="{:.3f}")
    pt = tables.get((s.name, "period_totals.csv"))
    if pt is not None:
        atlas.table(sec, "period totals (Pg C a⁻¹)", _readable(comparison.main_rows(pt)),
                    open_=False, floatfmt="{:.4g}")


COLUMNS = {"region_set": "region set", "area_km2": "area (km²)",
           "mean_flux_t_km2": "mean flux (t C km⁻² a⁻¹)", "total_tg": "total (Tg C a⁻¹)",
           "total_tg_sd": "s.d. (Tg C a⁻¹)", "share_pct": "share (%)", "category": "class",
           "mean_pg": "mean (Pg C a⁻¹)", "sd_pg": "s.d. (Pg C a⁻¹)", "n_years": "years"}


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns={c: COLUMNS[c] for c in df.columns if c in COLUMNS})


def _headline(c: Contents, tables) -> pd.DataFrame | None:
    rows = []
    for name, p in c.products.items():
        t = tables.get((name, "totals.csv"))
        if t is None:
            continue
        d = t[t.region_set == "domain"]
        rows.append({"product": name, "region": d["region"].iloc[0] if len(d) else "",
                     "years": _years(p), "area (km²)": float(d["area_km2"].mean()),
                     "mean flux (t C km⁻² a⁻¹)": float(d["mean_flux_t_km2"].mean()),
                     "total (Tg C a⁻¹)": float(d["total_tg"].mean()),
                     "s.d. (Tg C a⁻¹)": float(d["total_tg"].std())})
    return pd.DataFrame(rows) if rows else None


def _provenance(atlas, sec, store, c, attrs, t0, started):
    sec.blocks.append(("html", kv_html(scrub({
        "atlas written": started.isoformat(timespec="seconds"),
        "carbonsink (this atlas)": __version__, "store": store.url, "run prefix": repr(c.prefix),
        "release": f"{c.release.get('release', '')} ({c.release.get('created', '')})"}))))
    shown = c.shown
    created = sorted(p.record.get("created", "") for p in shown if p.record.get("created"))
    if created:
        t_a, t_b = (datetime.fromisoformat(x) for x in (created[0], created[-1]))
        span = (t_b - t_a).total_seconds()
        sec.blocks.append(("html", (f"<p>The datasets shown were computed between "
                                    f"{esc(created[0])} and {esc(created[-1])} ({span:.0f} s "
                                    "apart).</p>")))
    atlas.table(sec, "datasets shown (versions)", datasets_table(shown, attrs),
                name="datasets.csv")
    for title, facts in input_sources(c, attrs):
        sec.blocks.append(("table", f"sources of the {title}", kv_html(facts), True))
    for h, cfg in configurations(shown).items():
        sec.blocks.append(("table", f"run configuration {h}",
                           f"<pre>{esc(json.dumps(cfg, indent=2, ensure_ascii=False))}</pre>",
                           True))


def build_report(store, out_dir, *, prefix: str = "", client=None,
                 max_cells: int = MAX_CELLS) -> Path:
    """Write the atlas of run ``prefix`` in ``store`` (a :class:`~carbonsink.io.store.Store` or
    URL) to ``out_dir``: ``index.html`` (self-contained), ``figures/<id>.png|svg``,
    ``tables/*.csv`` and ``figures.json`` (what each figure shows); returns the HTML path.

    Reads published products only. Maps are drawn from area-weighted block means (at most
    ``max_cells`` blocks along a side) computed in one dask pass on ``client`` (else the active
    distributed client, else dask's local scheduler)."""
    t0, started = time.perf_counter(), datetime.now(UTC)
    store = store if isinstance(store, Store) else Store(str(store))
    validate_prefix(prefix)
    out = Path(out_dir)
    atlas = Atlas(out)
    c = discover(store, prefix)
    bm = basemap_of(c.reference.record)
    bms = [bm] + [basemap_of(comp.summary.record) for comp in c.comparisons]
    with ThreadPoolExecutor(1) as pool:   # boundaries (cnmaps files) while dask computes
        warm = pool.submit(lambda: [bmod.boundary_paths(b) for b in bms])
        opened = _open_all(store, c)
        regions = store.open(c.regions.kind, c.regions.name, c.regions.version) \
            if c.regions is not None else None
        fields = compute_fields(_lazy_fields(c, opened, regions, max_cells), client=client)
        tables = {}
        for name, p in c.products.items():
            for suffix in p.record.get("attachments", {}):
                if suffix.endswith(".csv"):
                    tables[(name, suffix)] = read_table(store, p, suffix)
        for comp in c.comparisons:
            for suffix in comp.summary.record.get("attachments", {}):
                if suffix.endswith(".csv"):
                    tables[(comp.summary.name, suffix)] = read_table(store, comp.summary, suffix)
        attrs = {p.key: dict(opened[n].attrs) for n, p in c.products.items()}
        for i, comp in enumerate(c.comparisons):
            attrs[comp.summary.key] = dict(opened[f"compare:{i}"].attrs)
            attrs.update({p.key: dict(opened[f"compare:{i}:{n}"].attrs)
                          for n, p in comp.products.items()})
        if c.inputs is not None:
            attrs[c.inputs.key] = dict(store.open(c.inputs.kind, c.inputs.name,
                                                  c.inputs.version).attrs)
        warm.result()
    t_data = time.perf_counter() - t0

    sections = [Section("overview", "Overview")]
    headline = _headline(c, tables)
    if headline is not None:
        atlas.table(sections[0], f"{bm.label}: period means of the study area", headline,
                    name="headline.csv")
    titles = {"nep": "Net ecosystem productivity (NEP)", "karst": "Karst carbon sink (CCS)",
              "sink": "Ecosystem carbon sink (NEP + CCS)", "trends": "Trends and change classes",
              "attribution": "Attribution of the trends"}
    for role, title in titles.items():
        group = c.by_role(role)
        if not group:
            continue
        sec = Section(role, title)
        sections.append(sec)
        for name, p in group.items():
            if role in ("nep", "karst", "sink"):
                _flux_section(atlas, sec, bm, c, name, p, fields, tables)
            elif role == "trends":
                _trends_section(atlas, sec, bm, name, p, fields, tables)
            else:
                _attribution_section(atlas, sec, bm, name, p, fields, tables)
    for part in (services, scenarios):
        sec = part.section(atlas, bm, c, fields, tables, opened)
        if sec is not None:
            sections.append(sec)
    for i, comp in enumerate(c.comparisons):
        sec = Section(f"comparison-{i}", f"Bottom-up vs top-down: {comp.summary.name}",
                      esc(comp.summary.record.get("description", "")))
        sections.append(sec)
        _comparison_section(atlas, sec, i, comp, fields, tables)
    prov = Section("provenance", "Provenance")
    sections.append(prov)
    _provenance(atlas, prov, store, c, attrs, t0, started)

    warnings = []
    if is_synthetic(c.inputs, attrs.get(c.inputs.key) if c.inputs else None):
        a = attrs.get(c.inputs.key, {})
        warnings.append(
            "<strong>Synthetic data.</strong> The inputs of this run are carbonsink's synthetic "
            f"China ({esc(a.get('source', c.inputs.key))}): schematic fields with planted trends "
            "and sensitivities. These figures check the machinery; they are not observations "
            "and say nothing about the real carbon sink.")
    for comp in c.comparisons:
        if is_synthetic(comp.summary):
            warnings.append(
                f"<strong>Synthetic data.</strong> The compared products of {esc(comp.summary.name)}"
                f" are synthetic ({esc(comp.summary.record.get('manifest_title', ''))}).")
    ref = c.reference.record
    years = ref.get("years") or []
    subtitle = [(f"{bm.label} · grid {ref.get('grid', '')} · "
                 f"{'–'.join(str(y) for y in years)} · run prefix {c.prefix!r}"),
                f"{len(atlas.figures)} figures from the published products of {scrub(store.url)}"]
    elapsed = time.perf_counter() - t0
    footer = (f"carbonsink {esc(__version__)} · atlas written {esc(started.isoformat('T', 'seconds'))}"
              f" in {elapsed:.1f} s · figures as PNG and SVG in figures/, tables in tables/")
    page = render(title=f"carbonsink atlas: {bm.label}", subtitle=subtitle, warnings=warnings,
                  sections=sections, footer=footer)
    (out / HTML).write_text(page, encoding="utf-8")
    manifest = {
        "carbonsink_version": __version__, "created": started.isoformat(),
        "store": scrub(store.url), "prefix": c.prefix, "domain": bm.domain,
        "domain_name": bm.label, "synthetic": bool(warnings),
        "timing_s": {"data": round(t_data, 2), "total": round(elapsed, 2)},
        "datasets": {p.key: p.version for p in c.shown},
        "figures": [{"id": f.id, "section": f.section, "title": f.title, "caption": f.caption,
                     "png": f.png, "svg": f.svg, "width_px": f.width_px,
                     "height_px": f.height_px, **f.meta} for f in atlas.figures]}
    (out / MANIFEST).write_text(json.dumps(_strict(manifest), indent=1, allow_nan=False,
                                           default=_json_default), encoding="utf-8")
    log.info("atlas: %d figures in %.1f s (data %.1f s) → %s", len(atlas.figures), elapsed,
             t_data, out / HTML)
    return out / HTML


def _strict(o):
    """``o`` with NaN and infinities as null (the manifest is strict JSON)."""
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_strict(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    return o


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
