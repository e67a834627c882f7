"""``carbonsink services``: the carbon-sequestration services family alone (SCIENCE.md §7) —
storage, emission inventory, balance, wind-routed flows and drivers — from published inputs or the
synthetic demo's, with what it needs (the sink, for the sequestration capacity) reused or computed.

Registered on :data:`carbonsink.cli.main` (imported at the end of that module); the headline lines
of the services products that ``demo`` and ``run`` print come from :func:`summary_lines` too.
"""
from __future__ import annotations

import click

from .cli import (
    _atlas_option,
    _fail,
    _on_cluster,
    _run_options,
    _settings,
    config_of_inputs,
    main,
)
from .config import ConfigError, load_config


def _last(t, column="year"):
    return t[t[column] == t[column].max()]


def summary_lines(name: str, table, pre: str = "") -> list[str]:
    """One or two lines per services product from its summary table (domain rows)."""
    if table is None or not len(table):
        return []
    if name == "services_storage":
        t = _last(table)
        tot = t[t.pool == "c_total"].iloc[0]
        pools = ", ".join(f"{r.pool[2:]} {r.total_tg_c / 1e3:.2f}" for r in t.itertuples()
                          if r.pool != "c_total")
        return [f"{pre}{name}: {tot.region} {int(tot.year)}: carbon storage {tot.total_tg_c / 1e3:.2f}"
                f" Pg C, mean {tot.mean_t_ha:.1f} t C ha-1 ({pools} Pg C)"]
    if name == "services_emission":
        t = _last(table)
        tot = t[t.term == "e_total"].iloc[0]
        terms = t[t.term != "e_total"].sort_values("total_tg", ascending=False)
        return [f"{pre}{name}: {tot.region} {int(tot.year)}: emission {tot.total_tg:.1f} Tg C a-1 ("
                + ", ".join(f"{r.term[2:]} {r.total_tg:.1f}" for r in terms.itertuples()) + ")"]
    if name == "services_balance":
        r = _last(table).iloc[0]
        unit = "Tg C" if r.capacity == "storage" else "Tg C a-1"
        return [f"{pre}{name}: {r.region} {int(r.year)} ({r.capacity} capacity): emission "
                f"{r.emission_tg:.1f} Tg C a-1, capacity {r.capacity_tg:.1f} {unit}, ratio "
                f"{r.ratio:.3f}, flow {r.flow_tg:.1f} (per-cell flows {r.flow_cells_tg:.1f})"]
    if name == "services_flow":
        r = _last(table).iloc[0]
        exp = sum(r[f"exported_{e}_t"] for e in "NESW")
        s = max(r.surplus_t, 1e-300)
        return [f"{pre}{name}: {int(r.year)}: routed surplus {r.surplus_t / 1e6:.2f} Tg C a-1: "
                f"absorbed downwind {100 * r.absorbed_t / s:.1f} %, exported {100 * exp / s:.1f} %"
                f", unabsorbed {100 * r.unabsorbed_t / s:.1f} % (mass balance residual "
                f"{r.mass_balance_residual_t:.2g} t)"]
    if name == "services_drivers":
        t = _last(table).sort_values("q", ascending=False)
        return [f"{pre}{name}: {int(t.year.iloc[0])}: Geodetector q " + ", ".join(
            f"{r.factor} {r.q:.3f}" for r in t.itertuples())]
    return []


def family_options(what_inputs: str, what_rh: str):
    """The options of a one-family command: the inputs it runs on (published, or the synthetic
    demo's on a grid, domain and years), the prefix, the run options and the atlas."""
    options = [
        click.option("--inputs", "inputs", default="synthetic",
                     help=f"published inputs with {what_inputs} [default synthetic: the demo's, "
                          "generated if not in the store]"),
        click.option("--inputs-version", default="latest", help="their version [default latest]"),
        click.option("--prefix", default=None, help="products are published as PREFIX + product "
                     "[default '<NAME>_'; none for synthetic]"),
        click.option("--resolution", "grid", default=None,
                     help="grid of the synthetic demo inputs"),
        click.option("--domain", default=None, help="study area of the synthetic demo inputs"),
        click.option("--years", default=None, help="years of the synthetic demo inputs"),
        _run_options(what_rh), _atlas_option]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


@main.command("services")
@click.option("--capacity", type=click.Choice(["auto", "sequestration", "storage"]), default=None,
              help="capacity of the balance: sequestration (NEP + CCS, the default) or the "
                   "standing storage (seed 003)")
@family_options("the services variables and province statistics",
                "only what the services need is computed (the sink, for the capacity)")
def services_cmd(capacity, inputs, inputs_version, prefix, grid, domain, years, store, n_workers,
                 scheduler, rh_model, chunk_mb, config_path, progress, atlas):
    """Carbon-sequestration services: storage (InVEST carbon model), the emission inventory,
    the balance of emission and capacity, wind-routed flows of the surplus and their drivers
    (Pearson, Geodetector) → published Zarr, tables per region and year, the catalog."""
    settings = _settings(store, n_workers, scheduler, rh_model, chunk_mb)
    if capacity:
        settings["services.capacity"] = capacity
    run_family("services", inputs, inputs_version, prefix, grid, domain, years, settings,
               config_path, progress, atlas)


def run_family(family: str, inputs, inputs_version, prefix, grid, domain, years, settings: dict,
               config_path, progress, atlas):
    """One registered family (and what it needs, reused or computed) on published inputs or the
    synthetic demo's: the body of ``carbonsink services`` and ``carbonsink scenarios``."""
    from .io.names import validate_name, validate_prefix, validate_version
    from .io.store import StoreError
    from .pipeline import run_demo, run_products

    validate_name(inputs, "inputs name")
    validate_version(inputs_version)
    validate_prefix(prefix or "")
    try:
        if inputs == "synthetic" and inputs_version == "latest":
            cfg = load_config(config_path, grid=grid, domain=domain, years=years, **settings)
            run = lambda: run_demo(cfg, progress=progress, families=[family])  # noqa: E731
        else:
            cfg = config_of_inputs(config_path, settings, inputs, inputs_version)
            run = lambda: run_products(cfg, inputs, inputs_version, prefix=prefix,  # noqa: E731
                                       progress=progress, families=[family])
    except (ConfigError, StoreError) as e:
        _fail(e)
    _on_cluster(cfg, f"carbonsink {family}: inputs/{inputs}@{inputs_version}", run, atlas)
