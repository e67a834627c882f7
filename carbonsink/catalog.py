"""The Intake catalog of a store: one entry per published input and product (and its tables).

Written as an Intake YAML catalog (``sources:`` with intake-xarray's ``zarr`` driver and intake's
``csv`` driver), which intake 2 opens with ``intake.open_catalog(url)``; ``cat[name].to_dask()``
gives a lazy xarray Dataset, ``cat[f"{name}_totals"].read()`` a pandas table. Paths are relative to
the catalog (``{{ CATALOG_DIR }}``) so a store can be moved or mirrored. The catalog points at the
released (``latest``) version of each dataset at the time it is regenerated and records that version.
It never carries credentials: S3 consumers take keys from their environment. The endpoint of the
store (non-secret ``client_kwargs.endpoint_url``) is recorded in each entry and wins over the
consumer's AWS_ENDPOINT_URL; regenerate the catalog after moving a store to another endpoint.
"""
from __future__ import annotations

import yaml

from .io.store import Published, Store

CATALOG_NAME = "catalog.yaml"


def _public_options(store: Store) -> dict:
    """The storage options a catalog carries: only where the store is and whether it is public
    (the scalar options below); everything else is dropped."""
    # an allow-list, not a scrub of known secrets, so no credential of any spelling (e.g.
    # s3_additional_kwargs.SSECustomerKey) can reach catalog.yaml; consumers bring their own keys
    allowed = (("endpoint_url",), ("region_name",), ("anon",),
               ("client_kwargs", "endpoint_url"), ("client_kwargs", "region_name"))
    out: dict = {}
    for path in allowed:
        value = store.storage_options
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (str, bool, int, float)):
            node = out
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
    return out


def _entry_name(p: Published, taken: set[str]) -> str:
    name = p.name if p.name not in taken else f"{p.kind}_{p.name}"
    taken.add(name)
    return name


def build_catalog(store: Store) -> dict:
    """The catalog (as a dict) of everything published in ``store``."""
    options = _public_options(store)
    sources: dict = {}
    taken: set[str] = set()
    for p in store.published():
        rec = p.record
        name = _entry_name(p, taken)
        units = rec.get("units", {})
        meta = {
            "kind": p.kind, "version": p.version, "created": rec.get("created"),
            "variables": rec.get("variables", []), "units": units,
            "grid": rec.get("grid"), "years": rec.get("years"),
            "domain": rec.get("domain", "china"), "domain_name": rec.get("domain_name", "China"),
            "grid_bbox": rec.get("grid_bbox"),
            "dims": rec.get("dims", {}),
        }
        args = {"urlpath": "{{ CATALOG_DIR }}/" + rec["path"], "consolidated": False}
        if options:
            args["storage_options"] = options
        sources[name] = {
            "driver": "zarr",
            "description": rec.get("description") or f"{p.kind} {p.name}",
            "args": args,
            "metadata": meta,
        }
        for suffix, rel in rec.get("attachments", {}).items():
            if suffix.endswith(".csv"):
                tname = f"{name}_{suffix[:-4].replace('.', '_')}"
                targs = {"urlpath": "{{ CATALOG_DIR }}/" + rel}
                if options:
                    targs["storage_options"] = options
                sources[tname] = {
                    "driver": "csv",
                    "description": f"{suffix[:-4]} table of {p.kind} {p.name} {p.version}",
                    "args": targs,
                    "metadata": {"kind": "table", "of": name, "version": p.version},
                }
    return {
        "metadata": {"version": 1, "title": "carbonsink store catalog",
                     "generated_by": "carbonsink.catalog"},
        "sources": sources,
    }


def write_catalog(store: Store) -> str:
    """Regenerate ``catalog.yaml`` at the store root (an atomic single write); returns its URL."""
    with store.lock("releases"):   # built from the current release, which cannot move meanwhile
        text = yaml.safe_dump(build_catalog(store), sort_keys=False)
        return store.write_text(CATALOG_NAME, text)


def open_catalog(url: str, **kwargs):
    """Open a store's catalog with Intake (``url`` of the store root or of the catalog file)."""
    import intake

    if not url.endswith((".yaml", ".yml")):
        url = url.rstrip("/") + "/" + CATALOG_NAME
    return intake.open_catalog(url, **kwargs)
