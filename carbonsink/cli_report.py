"""``carbonsink report``: the atlas of a run (:func:`carbonsink.report.build_report`).

Registered on :data:`carbonsink.cli.main` (imported at the end of that module). It reads published
products only, so it can be rerun on any store — local or S3 — without recomputing anything.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import click

from .cli import _USER_ERRORS, _fail, explain, main
from .config import ConfigError, load_config

DEFAULT_OUT = "carbonsink-atlas"


def default_out(prefix: str) -> str:
    """``carbonsink-atlas`` (``carbonsink-atlas-<prefix>`` for a prefixed run), in the current
    directory."""
    return DEFAULT_OUT + (f"-{prefix.rstrip('_-.')}" if prefix else "")


@main.command("report")
@click.option("--store", default=None, help="store path or s3:// URL [default from config]")
@click.option("--run", "prefix", default="", show_default=True,
              help="the run's product-name prefix (e.g. observed_ for `carbonsink run "
                   "observed`); '' for the demo's products")
@click.option("--out", "out_dir", default=None,
              help="directory for index.html, figures/ and tables/ [default ./carbonsink-atlas]")
@click.option("--scheduler", default=None,
              help="compute the maps' coarsened fields on this dask scheduler (tcp://HOST:PORT)")
@click.option("--config", "config_path", default=None, help="run YAML (store, storage options)")
def report_cmd(store, prefix, out_dir, scheduler, config_path):
    """Write the atlas of a run: a self-contained HTML page (maps, time series, pies and bars,
    the random forest's scores, the comparison, tables and provenance) and every figure as PNG
    and SVG, drawn from the products published in the store."""
    from .io.names import validate_prefix
    from .io.store import Store
    from .report import ReportError, build_report

    try:
        validate_prefix(prefix)
        cfg = load_config(config_path, store=store)
    except (ConfigError, ValueError) as e:
        _fail(e)
    out = Path(out_dir or default_out(prefix))
    t0 = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            client = None
            if scheduler:
                from distributed import Client

                client = stack.enter_context(Client(scheduler, timeout="30s"))
            st = Store(cfg.store, cfg.resolved_storage_options())
            html = build_report(st, out, prefix=prefix, client=client)
    except (*_USER_ERRORS, ReportError) as e:
        _fail(e)
    except OSError as e:
        _fail(explain(e))
    n = len(list((out / "figures").glob("*.png")))
    click.echo(f"atlas: {html.resolve()} ({n} figures as PNG and SVG in {out / 'figures'}) in "
               f"{time.perf_counter() - t0:.1f} s")
    click.echo(f"open: {html.resolve().as_uri()}")
