"""The product registry: product families declare what they are and the pipeline walks them.

A family (e.g. the carbon-sequestration services) registers one :class:`ProductSpec` per product
when its module is imported; :func:`specs` lists them in registration order (dependency order
within a family). Each spec says what it is computed from (``deps``: ``inputs``, ``regions`` or
another product; ``optional``: products used when the run has them), the parameters that decide
its values (part of its content address), what it publishes (variables, tables, figures) and
``compute(ctx)`` — which returns the dataset to publish and its attachments. Publishing, content
addressing, reuse, records, the catalog and the Prefect tasks are the pipeline's, the same for
every registered product: a new family adds a module, not another ``run_*``/``*_step`` pair.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import xarray as xr

# modules that register families when imported (kept here so the pipeline walks them all)
FAMILY_MODULES = ("carbonsink.products.services_family", "carbonsink.products.scenarios_family")


@dataclass
class Context:
    """What a product's ``compute`` gets: the run configuration, its dependencies opened as
    datasets (``data[dep]``), their published references (``published[dep]``, for records and
    attachments: ``table(dep, "x.csv")``) and the store."""
    cfg: object
    data: dict[str, xr.Dataset]
    published: dict
    store: object
    prefix: str = ""

    def table(self, dep: str, attachment: str) -> pd.DataFrame | None:
        """An attachment CSV of a dependency as a DataFrame (None if it has none of that name)."""
        import io

        p = self.published.get(dep)
        if p is None or attachment not in p.record.get("attachments", {}):
            return None
        return pd.read_csv(io.BytesIO(self.store.read_bytes(p.record["attachments"][attachment])))

    def raw(self, dep: str, attachment: str) -> bytes | None:
        p = self.published.get(dep)
        if p is None or attachment not in p.record.get("attachments", {}):
            return None
        return self.store.read_bytes(p.record["attachments"][attachment])


@dataclass
class Built:
    """What ``compute`` returns: the dataset to publish, a callable ``attach(staged) -> {name:
    bytes}`` computing its tables from the staged (written) dataset, the description of its
    record and extra record fields (facts)."""
    dataset: xr.Dataset
    attach: Callable[[xr.Dataset], dict[str, bytes]] | None
    description: str
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ProductSpec:
    product: str                         # published as prefix + product
    family: str
    deps: tuple[str, ...]                # "inputs", "regions" or products (without prefix)
    compute: Callable[[Context], Built]
    description: str
    outputs: tuple[str, ...] = ()        # variables
    tables: tuple[str, ...] = ()         # attachments
    figures: tuple[str, ...] = ()        # atlas figures drawn from it
    # products used when the run has them: a tuple, or cfg -> tuple
    optional: tuple[str, ...] | Callable[[object], tuple[str, ...]] = ()
    params: Callable[[object], dict] = lambda cfg: {}
    applies: Callable[[object, dict | None], bool] = lambda cfg, inputs_record: True
    summary: str | None = None           # attachment shown by the CLI summary
    # the CLI's headline lines from that attachment: (name, table, prefix) -> lines
    lines: Callable[[str, pd.DataFrame, str], list[str]] | None = None
    # checks of the run configuration's own inputs (files it names), raised before anything runs
    check: Callable[[object], None] | None = None


_SPECS: dict[str, ProductSpec] = {}


def register(spec: ProductSpec) -> ProductSpec:
    """Add a product (a re-import replaces it); its deps must be registered or core products."""
    _SPECS[spec.product] = spec
    return spec


def specs(family: str | None = None) -> list[ProductSpec]:
    """The registered products in registration order (all families, or one)."""
    for mod in FAMILY_MODULES:
        importlib.import_module(mod)
    return [s for s in _SPECS.values() if family is None or s.family == family]


def optional_deps(spec: ProductSpec, cfg) -> tuple[str, ...]:
    return tuple(spec.optional(cfg) if callable(spec.optional) else spec.optional)


def get(product: str) -> ProductSpec | None:
    """The registered spec of a product (None for core products)."""
    specs()
    return _SPECS.get(product)


def families() -> list[str]:
    return list(dict.fromkeys(s.family for s in specs()))
