"""The ``carbonsink`` command line.

Operator errors (bad input or configuration, a full disk, a read-only store, no permission, an
unreachable object store, a cluster without workers) end in one line on stderr that names the path
or dataset and what to do, with exit status 2; ``carbonsink --debug ...`` (or CARBONSINK_DEBUG=1)
shows the traceback instead. Progress bars are drawn only on a terminal; elsewhere (logs, CI,
Prefect) progress is plain log lines.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
import time

import click

from .cluster import ClusterError
from .config import ConfigError, load_config
from .io.store import StoreError
from .io.validate import InputError
from .kernels.respiration import RH_MODELS
from .ml import IonTableError
from .units import UnitError
from .zonal import DOMAIN

_USER_ERRORS = (ClusterError, ConfigError, InputError, IonTableError, StoreError, UnitError)


def _fail(e: Exception | str):
    click.secho(f"error: {e}", fg="red", err=True)
    sys.exit(2)


def explain(e: BaseException) -> str:
    """One line for an operator: what failed, where, and what to do."""
    from .io.store import is_transient

    if isinstance(e, _USER_ERRORS) or isinstance(e, ValueError):
        return str(e)
    if isinstance(e, OSError) and e.errno is not None:
        where = e.filename or "the store"
        what = {errno.ENOSPC: ("no space left on the device", "free space or choose another "
                                                               "--store"),
                errno.EDQUOT: ("disk quota exceeded", "free space or choose another --store"),
                errno.EROFS: ("the file system is read-only", "choose a writable --store"),
                errno.EACCES: ("permission denied", "check the owner and permissions, or "
                                                    "choose another --store"),
                errno.EPERM: ("operation not permitted", "check the owner and permissions")}
        if e.errno in what:
            problem, todo = what[e.errno]
            return f"{problem} writing {where}: {todo}"
    if is_transient(e):
        return (f"the object store or a cluster connection failed ({type(e).__name__}: {e}); "
                "check that the endpoint is reachable and retry — completed datasets are reused")
    return (f"unexpected {type(e).__name__}: {e} (run 'carbonsink --debug ...' for the traceback "
            "and report it)")


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever ``sys.stderr`` is when they are emitted (not when the handler was
    made), so commands invoked in one process one after another (tests, notebooks) each get
    theirs."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Main(click.Group):
    """The command group: every exception of a command becomes one line (see module doc)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted; datasets completed so far are kept and reused by a rerun")
        except Exception as e:  # noqa: BLE001 - the one place that turns errors into messages
            if (ctx.obj or {}).get("debug"):
                raise
            _fail(explain(e))


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="carbonsink")
@click.option("--debug", is_flag=True, default=lambda: bool(os.environ.get("CARBONSINK_DEBUG")),
              help="show tracebacks instead of one-line errors [env CARBONSINK_DEBUG=1]")
@click.pass_context
def main(ctx, debug):
    """carbonsink: China's carbon sinks mapped, totalled, trended and attributed.

    Start with `carbonsink demo` (synthetic China, every product, a local dask cluster); real data
    goes in with `carbonsink ingest` and through `carbonsink run`; `carbonsink verify`, `releases`
    and `export` look after a store and what is in it.
    """
    ctx.obj = {"debug": debug}
    if not logging.getLogger("carbonsink").handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               "%H:%M:%S"))
        logging.getLogger("carbonsink").addHandler(handler)
        logging.getLogger("carbonsink").setLevel(logging.INFO)


def _run_options(what_rh: str):
    """The options every computing command shares (store, cluster, Rh model, chunks, config,
    progress), outermost first."""
    options = [
        click.option("--store", default=None,
                     help="the store: a path, file://, s3://bucket/prefix or memory:// [default "
                          "./carbonsink-demo]; S3 keys come from AWS_* environment variables"),
        click.option("--workers", "n_workers", type=int, default=None,
                     help="worker processes of the local cluster [default 2]"),
        click.option("--scheduler", default=None,
                     help="address of a running dask scheduler (tcp://host:port) instead of a "
                          "local cluster"),
        click.option("--rh-model", type=click.Choice(RH_MODELS), default=None,
                     help=f"Rh model of the `nep` product [default soil_tps]; {what_rh}"),
        click.option("--chunk-mb", type=float, default=None,
                     help="target chunk size in MB [default 32]"),
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                     default=None, help="YAML run configuration (overridden by the options)"),
        click.option("--progress/--no-progress", default=lambda: sys.stdout.isatty(),
                     help="progress bars while computing [default: only on a terminal; "
                          "otherwise plain log lines]"),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def _settings(store, n_workers, scheduler, rh_model, chunk_mb) -> dict:
    return dict(store=store, rh_model=rh_model, chunk_mb=chunk_mb,
                **{"cluster.scheduler": scheduler, "cluster.n_workers": n_workers})


def _atlas_option(f):
    return click.option(
        "--atlas", "atlas", default=None,
        help="write the run's atlas (HTML + PNG/SVG figures) here at the end [default "
             "./carbonsink-atlas; CARBONSINK_NO_ATLAS=1 or --atlas '' skips it]")(f)


def _atlas_dir(atlas: str | None, prefix: str) -> str | None:
    """Where the final atlas goes: ``--atlas``, else the default, unless skipped."""
    if atlas is not None:
        return atlas or None
    if os.environ.get("CARBONSINK_NO_ATLAS", "").strip() not in ("", "0"):
        return None
    from .cli_report import default_out
    return default_out(prefix)


def _on_cluster(cfg, title: str, run, atlas: str | None = None):
    """Print what runs where, run ``run()`` on the configured cluster, report the result, and
    write the atlas from the published products (on the same cluster) when ``atlas`` is set."""
    from .cluster import connect

    g = cfg.grid_obj()
    click.echo(f"{title}, domain {cfg.domain_obj().label}, grid {g.name} ({g.nlat}×{g.nlon}), years "
               f"{cfg.years[0]}–{cfg.years[1]}, store {cfg.store}")
    t0 = time.perf_counter()
    try:
        with connect(cfg.cluster) as client:
            click.echo(f"dask cluster: {client.scheduler.address}  dashboard: "
                       f"{client.dashboard_link}")
            result = run()
            _report(result, cfg, t0)
            out = _atlas_dir(atlas, result.prefix)
            if out:
                from .io.store import Store
                from .report import build_report
                t1 = time.perf_counter()
                html = build_report(Store(cfg.store, cfg.resolved_storage_options()), out,
                                    prefix=result.prefix, client=client)
                click.echo(f"atlas: {html.resolve().as_uri()} ({time.perf_counter() - t1:.1f} s)")
    except _USER_ERRORS as e:
        _fail(e)


@main.command()
@click.option("--resolution", "grid", default=None,
              help="degrees dividing 1° or a preset: 500m (0.005), 1km (0.01), 1/120, 0.05, "
                   "0.1 [default], 0.25, 0.5, 1")
@click.option("--domain", default=None,
              help="study area: china [default], a province (sichuan), three-river-headwaters, "
                   "tibetan-plateau, bbox:W,S,E,N or a polygon file (.gpkg/.shp/.geojson"
                   "[?FIELD=VALUE])")
@click.option("--years", default=None, help="year range, e.g. 2000-2020 [default]")
@click.option("--seed", type=int, default=None, help="synthetic China seed [default 0]")
@_run_options("the demo also publishes nep_pei (or nep_soil_tps) so both published models are "
              "compared")
@_atlas_option
def demo(grid, domain, years, seed, store, n_workers, scheduler, rh_model, chunk_mb, config_path,
         progress, atlas):
    """Synthetic China → validated inputs → every product, published and released together.

    NEP with two Rh models, the karst sink with its random-forest ionic strength, the ecosystem
    sink, trends and attribution of NEP and the sink, their totals and area tables → versioned
    Zarr (GDAL-readable) + the Intake catalog. Datasets already complete for the same
    configuration and code are reused; a failed run changes nothing a reader sees."""
    from .pipeline import run_demo

    try:
        cfg = load_config(config_path, grid=grid, domain=domain, years=years, seed=seed,
                          **_settings(store, n_workers, scheduler, rh_model, chunk_mb))
    except ConfigError as e:
        _fail(e)
    _on_cluster(cfg, "carbonsink demo", lambda: run_demo(cfg, progress=progress), atlas)


@main.command("run")
@click.option("--inputs", "inputs", required=True,
              help="name of the published inputs to compute from (inputs/<NAME>, e.g. the "
                   "`name` of an ingest manifest; `synthetic` for the demo's)")
@click.option("--inputs-version", default="latest", help="their version [default latest]")
@click.option("--prefix", default=None,
              help="products are published as PREFIX + product [default '<NAME>_'; none for "
                   "synthetic]")
@_run_options("the other one is published too, as nep_<model>")
@_atlas_option
def run_cmd(inputs, inputs_version, prefix, store, n_workers, scheduler, rh_model, chunk_mb,
            config_path, progress, atlas):
    """Every product from published inputs (e.g. ingested with `carbonsink ingest`): NEP (both Rh
    models), karst (random-forest ionic strength when the inputs carry a basin layer and river
    chemistry), the sink, trends and attribution → published Zarr, tables and the catalog, on the
    inputs' grid and years (a --config asking for others is an error). Products already complete
    for the same inputs, configuration and code are reused."""
    from .io.names import validate_name, validate_prefix, validate_version
    from .pipeline import run_products

    validate_name(inputs, "inputs name")      # store paths: refused before anything starts
    validate_version(inputs_version)
    validate_prefix(prefix or "")
    settings = _settings(store, n_workers, scheduler, rh_model, chunk_mb)
    try:
        cfg = config_of_inputs(config_path, settings, inputs, inputs_version)
    except (ConfigError, StoreError) as e:
        _fail(e)
    _on_cluster(cfg, f"carbonsink run: inputs/{inputs}@{inputs_version}",
                lambda: run_products(cfg, inputs, inputs_version, prefix=prefix,
                                     progress=progress), atlas)


def config_of_inputs(config_path, settings: dict, inputs: str, version: str):
    """The run configuration on the grid, domain and years of published inputs (the store named by
    the settings or the config): a --config asking for others is then an error."""
    from .io.store import Store

    first = load_config(config_path, **settings)
    st = Store(first.store, first.resolved_storage_options())
    rec = st.record("inputs", inputs, st.resolve("inputs", inputs, version))
    years = rec.get("years") or [None, None]
    return load_config(config_path, defaults={"grid": rec.get("grid"),
                                              "domain": rec.get("domain", "china"),
                                              "years": f"{years[0]}-{years[1]}"}, **settings)


def _report(result, cfg, t0: float):
    """What a run published, where, and its headline numbers (demo and run)."""
    click.echo(f"\ndone in {time.perf_counter() - t0:.1f} s")
    reused = [n for n, p in result.published.items() if p.reused]
    if reused:
        click.echo(f"reused {len(reused)} of {len(result.published)} datasets unchanged since an "
                   "earlier run (same configuration, inputs and code): " + ", ".join(reused))
    click.echo(f"store:   {result.store}")
    click.echo(f"catalog: {result.catalog}")
    for name, p in result.published.items():
        # reused: its content-addressed version was already complete, nothing was recomputed
        click.echo(f"  {p.key}: {p.uri}" + ("  (reused)" if p.reused else ""))
        for suffix, rel in p.record.get("attachments", {}).items():
            click.echo(f"      {suffix}: {result.store}/{rel}")
    period = f"{cfg.years[0]}–{cfg.years[1]} mean ± s.d."
    pre = result.prefix
    for name, summary in result.tables.items():
        if name.startswith(("nep", "karst", "sink")):
            nat = summary[summary.region_set == DOMAIN].iloc[0]
            what = {"karst": "CCS over carbonate rock", "sink": "ecosystem sink NEP + CCS"}.get(
                name, "NEP")
            click.echo(f"{pre}{name}: {what}: {nat.region} mean {nat.mean_flux_t_km2:.2f} "
                       f"t C km-2 a-1, total {nat.total_tg:.2f} ± {nat.total_tg_sd:.2f} Tg C a-1 "
                       f"({period})")
            karst = summary[summary.region_set == "karst_region"]
            if len(karst):
                click.echo("    " + ", ".join(f"{r.region} {r.mean_flux_t_km2:.2f}" for r in
                                              karst.itertuples()) + " t C km-2 a-1")
        if name == "karst":
            f = result.facts
            if f.get("cv_r2") is None:
                click.echo("    ionic strength iterated as I = 3[Ca2+]eq (the inputs carry no "
                           "river chemistry table and basins for the random forest)")
            else:
                click.echo(f"    ionic-strength random forest: {f['cv_folds']}-fold CV R² "
                           f"{f['cv_r2']:.3f}, RMSE {f['cv_rmse']:.4f} mol L-1 "
                           f"({f['cv_scheme']}); whole basins held out: R² "
                           f"{f['basin_cv_r2']:.3f}, RMSE {f['basin_cv_rmse']:.4f} mol L-1")
        if name.startswith("trends_"):
            nat = summary[summary.region_set == DOMAIN].set_index("category")
            area = nat.area_km2.reindex(["increase", "decrease"]).fillna(0.0)
            click.echo(f"{pre}{name}: area increasing {area['increase'] / 1e4:.2f} ×10⁴ km², "
                       f"decreasing {area['decrease'] / 1e4:.2f} ×10⁴ km²")
        if name.startswith("attribution_"):
            nat = summary[summary.region_set == DOMAIN]
            if nat.share_pct.isna().all():
                click.echo(f"{pre}{name}: no pixel has enough years for attribution "
                           "(needs ≥ 6 years with 3 drivers)")
            else:
                click.echo(f"{pre}{name}: dominant factor by area: " + ", ".join(
                    f"{r.category} {r.share_pct:.1f}%" for r in nat.itertuples()))
        from .products import registry
        spec = registry.get(name)
        if spec is not None and spec.lines is not None:
            for line in spec.lines(name, summary, pre):
                click.echo(line)
    first = "nep" if "nep" in result.tables else next(iter(result.tables), "nep")
    click.echo(f"open with: intake.open_catalog({result.catalog!r})['{pre}{first}'].to_dask()")


@main.command("catalog")
@click.argument("store")
@click.option("--regenerate", is_flag=True, help="rewrite catalog.yaml from the published versions")
def catalog_cmd(store, regenerate):
    """List the datasets published in STORE (path or URL) and their latest versions."""
    from .catalog import write_catalog
    from .io.store import Store

    try:
        cfg = load_config(store=store)
        st = Store(cfg.store, cfg.resolved_storage_options())
        if regenerate:
            click.echo(f"wrote {write_catalog(st)}")
        for p in st.published():
            rec = p.record
            click.echo(f"{p.kind:8s} {p.name:14s} {p.version}  {rec.get('grid', '')} "
                       f"{rec.get('domain_name', 'China')}  "
                       f"{rec.get('years', '')}  {', '.join(rec.get('variables', []))}")
    except _USER_ERRORS as e:
        _fail(e)


# --- carbonsink cluster up|down|status (implementation: carbonsink.cluster) ---------------------
_state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False), default=None,
    help="where the cluster's state, scheduler file and logs live "
         "[default $CARBONSINK_CLUSTER_DIR, else ~/.carbonsink/cluster]")


@main.group("cluster")
def cluster_group():
    """A local multi-process dask cluster that keeps running in the background.

    `up` starts it, `status` shows it (exit 0 running, 1 not running), `down` stops it (exit 0,
    also when nothing is running). Use it with `carbonsink demo --scheduler ADDR`, the
    CARBONSINK_SCHEDULER environment variable or `distributed.Client(ADDR)`.
    """


@cluster_group.command("up")
@click.option("--workers", "n_workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="worker processes")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--memory-limit", default="2GB", show_default=True,
              help="memory limit of each worker process (e.g. 2GB, 4GiB, auto)")
@_state_dir_option
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="seconds to wait for the scheduler and every worker")
def cluster_up_cmd(n_workers, threads_per_worker, memory_limit, state_dir, timeout):
    """Start `dask scheduler` + N `dask worker` processes on 127.0.0.1, detached."""
    from .cluster import cluster_up, default_state_dir, resolve_state_dir

    try:
        st = cluster_up(n_workers, threads_per_worker=threads_per_worker,
                        memory_limit=memory_limit, state_dir=state_dir, timeout=timeout)
    except ClusterError as e:
        _fail(e)
    addr = st["scheduler"]
    where = resolve_state_dir(state_dir)
    sd = "" if where == resolve_state_dir(default_state_dir()) else f" --state-dir {where}"
    click.echo(f"dask cluster up: {n_workers} worker(s) × {threads_per_worker} thread(s), "
               f"{memory_limit} each (state and logs: {where})")
    click.echo(f"scheduler: {addr}")
    click.echo(f"dashboard: {st['dashboard']}")
    click.echo("use it:")
    click.echo(f"  carbonsink demo --scheduler {addr}")
    click.echo(f"  export CARBONSINK_SCHEDULER={addr}    # then every carbonsink command uses it")
    click.echo(f"  from distributed import Client; client = Client({addr!r})    # Python/notebook")
    click.echo(f"stop it:   carbonsink cluster down{sd}")


@cluster_group.command("status")
@_state_dir_option
def cluster_status_cmd(state_dir):
    """Whether the cluster runs, and its workers (exit 0 running, 1 not running)."""
    from dask.utils import format_bytes

    from .cluster import cluster_status, resolve_state_dir

    try:
        s = cluster_status(state_dir)
    except ClusterError as e:
        _fail(e)
    where = resolve_state_dir(state_dir)
    if s["state"] is None:
        click.echo(f"not running: no cluster recorded in {where}")
        sys.exit(1)
    st = s["state"]
    if not s["running"]:
        click.echo(f"not running: {st['scheduler']} is recorded in {where} but {s['error']}; "
                   "`carbonsink cluster down` cleans up")
        sys.exit(1)
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st["started_at"]))
    click.echo(f"running: {st['scheduler']}  dashboard: {st['dashboard']}  (since {since}, "
               f"state in {where})")
    click.echo(f"{len(s['workers'])} worker(s) (started {st['n_workers']}):")
    for w in s["workers"]:
        limit = format_bytes(w["memory_limit"]) if w["memory_limit"] else "no limit"
        used = format_bytes(w["memory"]) if w["memory"] is not None else "?"
        click.echo(f"  {w['name']:10s} {w['address']:24s} {w['nthreads']} thread(s)  "
                   f"memory {used} of {limit}  {w['status']}")


@cluster_group.command("down")
@_state_dir_option
@click.option("--timeout", type=float, default=20.0, show_default=True,
              help="seconds to wait after SIGTERM before SIGKILL")
def cluster_down_cmd(state_dir, timeout):
    """Stop the cluster (SIGTERM, then SIGKILL after --timeout) and remove its state; exit 0 also
    when nothing is running."""
    from .cluster import cluster_down, resolve_state_dir

    try:
        res = cluster_down(state_dir, timeout=timeout)
    except ClusterError as e:
        _fail(e)
    where = resolve_state_dir(state_dir)
    if res is None:
        click.echo(f"no cluster recorded in {where}: nothing to stop")
        return
    click.echo(f"stopped the cluster at {res['state'].get('scheduler')} "
               f"({len(res['stopped'])} process(es)); removed its state in {where}")


@main.command("ingest")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--store", required=True,
              help="where to publish: a path, file://, s3://bucket/prefix or memory:// (S3 keys "
                   "from AWS_* environment variables)")
@click.option("--name", default=None, help="publish as inputs/NAME [default: the manifest's name]")
@click.option("--dry-run", is_flag=True, help="check the manifest and every file, say what would be "
                                              "written, write nothing")
@click.option("--progress/--no-progress", default=False, help="progress bar while computing")
def ingest_cmd(manifest, store, name, dry_run, progress):
    """Ingest the real data files MANIFEST names (YAML) into canonical inputs in STORE."""
    from .io.ingest import ingest
    from .io.store import Store

    try:
        cfg = load_config(store=store)
        st = Store(cfg.store, cfg.resolved_storage_options())
        result = ingest(manifest, st, name=name, dry_run=dry_run, progress=progress)
    except _USER_ERRORS as e:
        _fail(e)
    click.echo(result.message)
    if result.uri:
        click.echo(f"inputs:  {result.uri}")
    if result.catalog:
        click.echo(f"catalog: {result.catalog}")


# --- store care: verify, releases, export -------------------------------------------------------
def _open_store(store: str, config_path=None):
    from .io.store import Store

    cfg = load_config(config_path, store=store)
    return cfg, Store(cfg.store, cfg.resolved_storage_options())


def _dataset_arg(text: str) -> tuple[str, str]:
    """'nep' → products/nep; 'inputs/synthetic' as given."""
    kind, _, name = text.partition("/")
    return (kind, name) if name else ("products", kind)


@main.command("verify")
@click.argument("store", required=False, default="./carbonsink-demo")
@click.option("--dataset", default=None, help="only this dataset (e.g. products/nep)")
@click.option("--released-only", is_flag=True, help="only the versions of the current release")
@click.option("--deep", is_flag=True, help="also decode every chunk (reads all data)")
@click.option("--repair", is_flag=True,
              help="quarantine damaged versions and recompute them (reruns the demo or `run` "
                   "that made them; intact datasets are reused)")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="YAML run configuration (storage options, cluster) for --repair")
def verify_cmd(store, dataset, released_only, deep, repair, config_path):
    """Check every published version of STORE against its manifest (exit 1 if any is damaged).

    Cheap by default: one listing per version finds missing, extra, truncated or rewritten objects;
    --deep decodes every chunk too. Damaged versions are never reused by a run: a rerun quarantines
    and recomputes them; --repair does that now."""
    from .maintenance import check_current_release, repair_current_release, verify_store
    from .maintenance import repair as do_repair

    cfg, st = _open_store(store, config_path)
    release_problem = check_current_release(st)
    if release_problem:
        click.echo(f"DAMAGED releases/current.json: {release_problem}")
        if repair:
            click.echo(f"repaired releases/current.json from release {repair_current_release(st)}")
            release_problem = None
    findings, n = verify_store(st, dataset=dataset, released_only=released_only, deep=deep)
    for f in findings:
        click.echo(f"DAMAGED {f.key} {f.version}{' (released)' if f.released else ''}: "
                   + "; ".join(f.problems[:3]))
    click.echo(f"checked {n} version(s): {len(findings)} damaged, {n - len(findings)} intact")
    if findings and repair:
        from .cluster import connect

        with connect(cfg.cluster):
            report = do_repair(st, findings, config_path)
        for line in report.rerun:
            click.echo(f"reran {line}")
        for line in report.recomputed:
            click.echo(f"repaired {line}")
        for line in report.unrepairable:
            click.echo(f"NOT repaired {line}")
        sys.exit(1 if report.unrepairable or release_problem else 0)
    sys.exit(1 if findings or release_problem else 0)


@main.command("releases")
@click.argument("store", required=False, default="./carbonsink-demo")
@click.option("--rollback", "rollback_to", default=None, metavar="RELEASE",
              help="make RELEASE current again (as a new release) and regenerate the catalog")
def releases_cmd(store, rollback_to):
    """The releases of STORE, oldest first (the current one marked *): each names the version of
    every dataset that was `latest` together; earlier versions stay readable by id."""
    from .catalog import write_catalog

    _, st = _open_store(store)
    if rollback_to:
        rid = st.rollback(rollback_to, after=lambda: write_catalog(st))
        click.echo(f"release {rid}: the datasets of {rollback_to} are latest again")
    current = st.current_release().get("release")
    for r in st.releases():
        mark = "*" if r["release"] == current else " "
        click.echo(f"{mark} {r['release']}  {r['created']}  {len(r['datasets'])} datasets  "
                   f"{r.get('note', '')}")


@main.command("export")
@click.argument("dataset")
@click.option("--store", default="./carbonsink-demo", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["cog", "netcdf"]), default="cog",
              show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="output folder")
@click.option("--version", default="latest", show_default=True)
@click.option("--variable", "variables", multiple=True, help="only these variables (repeatable)")
@click.option("--overwrite", is_flag=True, help="replace existing files")
def export_cmd(dataset, store, fmt, out_dir, version, variables, overwrite):
    """Write a published DATASET (e.g. nep, products/sink, inputs/synthetic) as Cloud-Optimized
    GeoTIFFs or one CF NetCDF file, for GIS users."""
    from .io.export import export

    _, st = _open_store(store)
    kind, name = _dataset_arg(dataset)
    paths = export(st, kind, name, version=version, fmt=fmt, out_dir=out_dir,
                   variables=list(variables) or None, overwrite=overwrite)
    for path in paths:
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()


# commands defined in their own modules register themselves on ``main``
from . import (
    cli_compare,  # noqa: E402,F401
    cli_report,  # noqa: E402,F401
    cli_scenarios,  # noqa: E402,F401
    cli_services,  # noqa: E402,F401
)
