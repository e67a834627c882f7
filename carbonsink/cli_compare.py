"""``carbonsink compare``: bottom-up vs top-down flux products (SCIENCE.md §8, seed 001).

Registered on :data:`carbonsink.cli.main` (imported at the end of that module). The comparison runs
in this process — every product on the 1° comparison grid is a few hundred MB at most — and is
published like the other products: versions staged, checked, then released together with the
catalog regenerated, so a failure leaves nothing half-visible.
"""
from __future__ import annotations

import shutil
import tempfile
import time

import click

from .cli import _USER_ERRORS, _fail, main
from .config import ConfigError, load_config


def run_compare_cli(store_url: str, manifest, prefix: str, storage_options=None):
    """Publish a comparison into ``store_url`` and release it with the catalog; returns
    (published, tables, catalog url)."""
    from .io.store import Store
    from .pipeline import publish_catalog
    from .products.compare import read_table, run_compare

    store = Store(store_url, storage_options or {}, auto_release=False)
    published = run_compare(store, manifest, prefix=prefix)
    catalog = publish_catalog(store, published.values())
    summary = published[f"{prefix}summary"]
    tables = {name: read_table(store, summary, name)
              for name in ("period_totals.csv", "metrics.csv")
              if name in summary.record.get("attachments", {})}
    return published, tables, catalog


def _summary_lines(tables: dict) -> list[str]:
    """The headline numbers: each product's study-area total, its divisions and land-cover shares
    (both of the total and of the four-class sum, as seed 001 reports them), and the scores."""
    pt = tables["period_totals.csv"]
    lines = []
    dom = pt[pt.region_set == "domain"]
    products = list(dict.fromkeys(dom["product"]))
    for name in products:
        rows = pt[pt["product"] == name]
        members = rows[(rows.region_set == "domain") & (rows.member != "")]
        main_member = "ensemble_mean" if len(members) else ""
        r = rows[rows.member == main_member]
        d = r[r.region_set == "domain"].iloc[0]
        extra = ""
        if len(members):
            m = members[members.member != "ensemble_mean"]
            extra = (f" (ensemble mean of {len(m)} members, {m.mean_pg.min():.2f}–"
                     f"{m.mean_pg.max():.2f})")
        lines.append(f"{name} [{d.kind.replace('_', '-')}]: {d.region} {d.mean_pg:.3f} ± "
                     f"{d.sd_pg:.3f} Pg C a-1{extra}")
        div = r[r.region_set == "division"]
        if len(div):
            lines.append("    " + ", ".join(f"{x.region} {x.mean_pg:.3f}" for x in div.itertuples()))
        lc = r[(r.region_set == "landcover") & r.share_of_classes_pct.notna()]
        if len(lc):
            lines.append("    " + ", ".join(
                f"{x.region} {x.mean_pg:.3f} ({x.share_of_classes_pct:.0f}% of classes, "
                f"{x.share_of_total_pct:.0f}% of total)" for x in lc.itertuples()))
    if "metrics.csv" in tables:
        mt = tables["metrics.csv"]
        mt = mt[(mt.region_set == "domain") & mt.member.isin(["", "ensemble_mean"])]
        if len(mt):
            ref = mt.reference.iloc[0]
            lines.append(f"scores vs {ref} (ILAMB; 1 = identical): " + ", ".join(
                f"{x.product} {x.overall_score:.2f}" for x in mt.itertuples()
                if x.product != ref))
    return lines


@main.command("compare")
@click.argument("manifest", required=False)
@click.option("--demo", is_flag=True,
              help="compare synthetic BEPS-, VEGAS- and OCO-2 MIP-like products (written to a "
                   "temporary folder, or --demo-dir) instead of MANIFEST")
@click.option("--demo-dir", default=None, help="keep the demo's synthetic files here")
@click.option("--store", default=None, help="store path or s3:// URL [default from config]")
@click.option("--prefix", default="compare_", show_default=True,
              help="products are published as PREFIX + product name")
@click.option("--config", "config_path", default=None, help="run YAML (store, storage options)")
def compare(manifest, demo, demo_dir, store, prefix, config_path):
    """Bottom-up (process models) vs top-down (atmospheric inversions) land-sink products.

    Reads every product a flux MANIFEST names (units, sign and time axis as the files declare
    them), puts them in sink-positive g C m-2 month-1 on one grid with exact conservative
    regridding, and publishes each product plus `<prefix>summary` with the tables: totals per
    year, period means ± s.d. for the study area, the four divisions and land-cover classes, the
    mean seasonal cycle, latitude × month zonal means, ensemble statistics and ILAMB metrics
    against the manifest's reference."""
    from .io.names import validate_prefix

    if bool(manifest) == bool(demo):
        _fail("give a flux MANIFEST or --demo (not both)")
    validate_prefix(prefix)
    try:
        cfg = load_config(config_path, store=store)
    except ConfigError as e:
        _fail(e)
    t0 = time.perf_counter()
    tmp = None
    try:
        if demo:
            from .synthetic_fluxes import make_flux_products

            tmp = None if demo_dir else tempfile.mkdtemp(prefix="carbonsink-fluxes-")
            made = make_flux_products(demo_dir or tmp)
            manifest = made.manifest
            click.echo(f"synthetic flux products in {made.directory}")
        published, tables, catalog = run_compare_cli(cfg.store, manifest, prefix,
                                                     cfg.resolved_storage_options())
    except _USER_ERRORS as e:
        _fail(e)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    click.echo(f"done in {time.perf_counter() - t0:.1f} s")
    click.echo(f"catalog: {catalog}")
    for name, p in published.items():
        click.echo(f"  {p.key}: {p.uri}")
        for suffix, rel in p.record.get("attachments", {}).items():
            click.echo(f"      {suffix}: {cfg.store}/{rel}")
    for line in _summary_lines(tables):
        click.echo(line)
