"""Store maintenance: verify published versions against their manifests, and repair damage by
recomputing what a content-addressed run would compute anyway.

``verify`` checks every complete version (or only the released ones, or one dataset): cheap by
default (one listing per version against its manifest: missing, extra, truncated or rewritten
objects), ``deep`` decodes every chunk too. ``repair`` quarantines each damaged version (its record
becomes ``<version>.damaged.json``, so nothing reuses it) and reruns the runs that made them — the
demo for datasets computed from the synthetic inputs, ``run --inputs NAME`` for datasets of
ingested inputs — with the configuration recorded in the version's record. Content addressing
recomputes exactly the quarantined versions and reuses every intact one. Damaged *ingested*
inputs cannot be recomputed from the store: their sources must be ingested again (said so).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from .io.store import Store, StoreError

log = logging.getLogger("carbonsink")


@dataclass
class Finding:
    kind: str
    name: str
    version: str
    problems: list[str]
    released: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class RepairReport:
    quarantined: list[Finding] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)          # what was rerun
    recomputed: list[str] = field(default_factory=list)     # key@version now intact again
    unrepairable: list[str] = field(default_factory=list)   # with what to do


def _datasets(store: Store) -> list[tuple[str, str]]:
    out = []
    for kind in ("inputs", "products"):
        base = store.path(kind)
        store.fs.invalidate_cache(base)
        if store.fs.exists(base):
            out += [(kind, p.rstrip("/").rsplit("/", 1)[-1])
                    for p in sorted(store.fs.ls(base, detail=False))]
    return out


def verify_store(store: Store, *, dataset: str | None = None, released_only: bool = False,
                 deep: bool = False) -> tuple[list[Finding], int]:
    """(damaged versions, number of versions checked). ``dataset``: "kind/name" to check only
    that one; ``released_only``: only the versions of the current release."""
    released = store.current_release().get("datasets", {})
    if dataset:
        kind, _, name = dataset.partition("/")
        targets = [(kind, name)]
    else:
        targets = _datasets(store)
    findings, n = [], 0
    for kind, name in targets:
        versions = ([released[f"{kind}/{name}"]] if f"{kind}/{name}" in released else []) \
            if released_only else store.versions(kind, name)
        for v in versions:
            n += 1
            problems = store.verify(kind, name, v, deep=deep)
            if problems:
                findings.append(Finding(kind, name, v, problems,
                                        released.get(f"{kind}/{name}") == v))
    return findings, n


CURRENT = "releases/current.json"


def check_current_release(store: Store) -> str | None:
    """What is wrong with ``releases/current.json`` (None: intact or absent)."""
    try:
        store.read_json(CURRENT)
    except FileNotFoundError:
        return None
    except StoreError as e:
        return str(e)
    return None


def repair_current_release(store: Store) -> str:
    """Rewrite a damaged ``releases/current.json`` from the newest release of the history (every
    release is written there before it becomes current); its id."""
    history = store.releases()
    if not history:
        raise StoreError(f"{store.uri(CURRENT)} is damaged and {store.uri('releases')} has no "
                         "intact release to restore it from; rerun the demo or run to release "
                         "again")
    with store.lock("releases"):
        store.write_text(CURRENT, json.dumps(history[-1], indent=2))
    return history[-1]["release"]


def repair(store: Store, findings: list[Finding], config_path=None, *,
           progress: bool = False) -> RepairReport:
    """Quarantine the damaged versions and rerun the runs that made them (see module doc), with
    the result-determining settings of their records; ``config_path``: a run YAML for the rest
    (storage options such as the endpoint; keys come from the environment as always)."""
    from .config import load_config
    from .pipeline import run_demo, run_products

    report = RepairReport()
    runs: dict[tuple, dict] = {}
    for f in findings:
        rec = {}
        try:
            rec = store.read_json(f"{f.kind}/{f.name}/{f.version}.json")
        except (FileNotFoundError, StoreError):
            pass
        store.quarantine(f.kind, f.name, f.version, f.problems)
        report.quarantined.append(f)
        inputs = _source_inputs(rec, f)
        if inputs is None or "config" not in rec:
            report.unrepairable.append(
                f"{f.key}@{f.version}: ingested inputs cannot be recomputed from the store; "
                f"ingest its sources again (carbonsink ingest MANIFEST --name {f.name})")
            continue
        key = (inputs, repr(sorted(rec["config"].items())))
        runs.setdefault(key, {"inputs": inputs, "config": rec["config"], "targets": []})
        runs[key]["targets"].append(f)
    for run in runs.values():
        recorded = {k: v for k, v in run["config"].items()
                    if k not in ("store", "storage_options", "cluster")}
        cfg = load_config(config_path, **{**recorded, "store": store.url})
        if run["inputs"] == "synthetic":
            report.rerun.append(f"demo (grid {cfg.grid}, years {cfg.years[0]}-{cfg.years[1]})")
            run_demo(cfg, progress=progress)
        else:
            report.rerun.append(f"run --inputs {run['inputs']}")
            run_products(cfg, run["inputs"], progress=progress)
        for f in run["targets"]:
            if store.complete(f.kind, f.name, f.version) and not store.verify(
                    f.kind, f.name, f.version):
                report.recomputed.append(f"{f.key}@{f.version}")
            else:
                report.unrepairable.append(
                    f"{f.key}@{f.version}: the rerun made a different version (the code or the "
                    "inputs changed since); the damaged one stays quarantined")
    return report


def _input_set(dataset: str) -> str | None:
    """'inputs/synthetic' → 'synthetic', 'inputs/regions' → 'synthetic' (the demo's masks),
    'inputs/regions_X' → 'X', 'inputs/X' → 'X'; products → None."""
    kind, _, name = dataset.partition("/")
    if kind != "inputs":
        return None
    if name == "regions":
        return "synthetic"
    return name.removeprefix("regions_")


def _source_inputs(rec: dict, f: Finding) -> str | None:
    """The name of the input set a dataset was computed from ('synthetic' for the demo), from its
    content address; None for ingested inputs themselves (not recomputable from the store)."""
    if f.kind == "inputs":
        name = _input_set(f.key)
        return name if (name == "synthetic" or f.name.startswith("regions")) else None
    for ref in (rec.get("content_address") or {}).get("inputs", {}).values():
        name = _input_set(ref.split("@", 1)[0])
        if name is not None:
            return name
    return None
