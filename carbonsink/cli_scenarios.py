"""``carbonsink scenarios [SCENARIO.yaml ...]``: the enhancement scenarios (SCIENCE.md §9) on
published inputs or the synthetic demo's, with the sink they add to reused or computed.

Registered on :data:`carbonsink.cli.main` (imported at the end of that module).
"""
from __future__ import annotations

import click

from .cli import _settings, main
from .cli_services import family_options, run_family


@main.command("scenarios")
@click.argument("scenario_files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--measures", "measures", type=click.Path(exists=True, dir_okay=False),
              default=None, help="measure catalogue (YAML or CSV; may `extends: default`) "
              "[default the package's: seed 002's 31 measures and its pathways]")
@click.option("--baseline-years", type=int, default=None,
              help="the measured baseline: min/mean/max of the sink's last N years [default 5]")
@click.option("--allocation-year", type=int, default=None,
              help="land-use map the measures are placed on [default the run's last year]")
@family_options("land use, elevation and precipitation",
                "the baseline sink is computed with it when not in the store")
def scenarios_cmd(scenario_files, measures, baseline_years, allocation_year, inputs,
                  inputs_version, prefix, grid, domain, years, store, n_workers, scheduler,
                  rh_model, chunk_mb, config_path, progress, atlas):
    """Enhancement scenarios: which measures, where and how fast, reach the 2.0-2.5 Gt CO2 a-1
    target of 2050-2060 — measures placed on the land-use map, the sink they add on top of the
    measured one per year (low/central/high), the year the target is met, totals per region.
    Without SCENARIO files: the demo set (the seed's measures and pathways at their
    potentials, and measures placed by their rates)."""
    settings = _settings(store, n_workers, scheduler, rh_model, chunk_mb)
    if scenario_files:
        settings["scenarios.files"] = [str(f) for f in scenario_files]
    for key, value in (("scenarios.measures", measures),
                       ("scenarios.baseline_years", baseline_years),
                       ("scenarios.allocation_year", allocation_year)):
        if value is not None:
            settings[key] = value
    run_family("scenarios", inputs, inputs_version, prefix, grid, domain, years, settings,
               config_path, progress, atlas)
