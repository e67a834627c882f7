"""What a store holds for one run, and where it came from: the products of a run prefix, the
inputs and region masks they were computed from, the comparisons, and their provenance.

Only published, released datasets are read (``Store.published()``: the current release); the
inputs and region masks are the exact versions the products' content addresses name.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import pandas as pd

from ..io.errors import StoreError
from ..io.store import Published, Store
from ..kernels.respiration import RH_MODELS
from .page import scrub

ORDER = ("nep", "karst", "sink", "trends", "attribution", "services", "scenarios")


class ReportError(ValueError):
    """Nothing to report, or a store the atlas cannot read: the message says what to do."""


def role_of(name: str) -> str | None:
    """The product family of a published name (without the run prefix)."""
    if name == "nep" or (name.startswith("nep_") and name[4:] in RH_MODELS):
        return "nep"
    if name in ("karst", "sink"):
        return name
    if name in ("trends_nep", "trends_sink"):
        return "trends"
    if name in ("attribution_nep", "attribution_sink"):
        return "attribution"
    if name.startswith("services_"):
        return "services"
    if name == "scenarios":
        return "scenarios"
    return None


def _is_compare_summary(p: Published) -> bool:
    att = p.record.get("attachments", {})
    return p.kind == "products" and "metrics.csv" in att and "seasonal_cycle.csv" in att


@dataclass
class Comparison:
    summary: Published
    products: dict[str, Published] = field(default_factory=dict)   # product name → published


@dataclass
class Contents:
    prefix: str
    products: dict[str, Published] = field(default_factory=dict)   # name without prefix
    inputs: Published | None = None
    regions: Published | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    release: dict = field(default_factory=dict)

    def by_role(self, role: str) -> dict[str, Published]:
        return {n: p for n, p in self.products.items() if role_of(n) == role}

    @property
    def shown(self) -> list[Published]:
        out = [p for p in (self.inputs, self.regions) if p is not None]
        out += list(self.products.values())
        for c in self.comparisons:
            out += [c.summary, *c.products.values()]
        return out

    @property
    def reference(self) -> Published | None:
        """A record that names the study area and grid of the run (a product, else a summary)."""
        for p in [*self.products.values(), self.regions, self.inputs,
                  *(c.summary for c in self.comparisons)]:
            if p is not None and p.record.get("grid_bbox"):
                return p
        return None


def _exact(store: Store, ref: str) -> Published | None:
    """``kind/name@version`` as published, if that version is still complete."""
    key, _, version = ref.partition("@")
    kind, _, name = key.partition("/")
    try:
        return store.complete(kind, name, version) if version else None
    except (StoreError, ValueError):
        return None


def discover(store: Store, prefix: str = "") -> Contents:
    """The datasets of run ``prefix`` in the store's current release (see the module doc)."""
    try:
        published = store.published()
        release = store.current_release()
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable store: one line for the operator
        raise ReportError(f"cannot read the releases of {store.url}: {type(e).__name__}: {e}") \
            from None
    c = Contents(prefix=prefix, release={k: release.get(k) for k in ("release", "created")})
    by_key = {p.key: p for p in published}
    for p in published:
        if p.kind != "products" or not p.name.startswith(prefix):
            continue
        name = p.name[len(prefix):]
        if role_of(name):
            c.products[name] = p
    c.products = dict(sorted(c.products.items(),
                             key=lambda kv: (ORDER.index(role_of(kv[0])), kv[0])))
    for p in c.products.values():        # the exact inputs and masks the products were made of
        refs = p.record.get("content_address", {}).get("inputs", {})
        if c.inputs is None and "inputs" in refs:
            c.inputs = _exact(store, refs["inputs"])
        if c.regions is None and "regions" in refs:
            c.regions = _exact(store, refs["regions"])
    if c.products and (c.inputs is None or c.regions is None):
        base = prefix.rstrip("_-.") or "synthetic"
        c.inputs = c.inputs or by_key.get(f"inputs/{base}")
        c.regions = c.regions or by_key.get("inputs/regions" if base == "synthetic"
                                            else f"inputs/regions_{base}")
    for p in published:
        if _is_compare_summary(p) and p.name.startswith(prefix):
            base = p.name[: -len("summary")] if p.name.endswith("summary") else ""
            comp = Comparison(p)
            for src in p.record.get("products", []):
                q = by_key.get(f"products/{base}{src.get('name')}")
                if q is not None and src.get("role", "flux") == "flux":
                    comp.products[src["name"]] = q
            c.comparisons.append(comp)
    if not c.products and not c.comparisons:
        runs = sorted({p.name[: -len(n)] for p in published if p.kind == "products"
                       for n in ("karst", "nep") if p.name.endswith(n)
                       and not p.name[: -len(n)].endswith(("trends_", "attribution_"))}
                      - {prefix})
        hint = (f"; runs in this store: {', '.join(repr(r) for r in runs)} (pass --run PREFIX)"
                if runs else "; run 'carbonsink demo' or 'carbonsink run' first")
        raise ReportError(f"no published products of run prefix {prefix!r} in {store.url}{hint}")
    return c


def read_table(store: Store, p: Published, suffix: str) -> pd.DataFrame | None:
    rel = p.record.get("attachments", {}).get(suffix)
    if not rel:
        return None
    return pd.read_csv(io.BytesIO(store.read_bytes(rel)))


# --- provenance -----------------------------------------------------------------------------------
def is_synthetic(p: Published | None, attrs: dict | None = None) -> bool:
    if p is None:
        return False
    attrs = attrs or {}
    text = " ".join(str(x) for x in (p.name, p.record.get("description", ""),
                                     p.record.get("manifest_title", ""), attrs.get("title", ""),
                                     attrs.get("source", ""))).lower()
    return "synthetic_seed" in attrs or "synthetic" in text


def code_version(p: Published, attrs: dict | None = None) -> str:
    return str(p.record.get("content_address", {}).get("code_version")
               or (attrs or {}).get("carbonsink_version") or "")


def datasets_table(shown: list[Published], attrs: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for p in shown:
        r = p.record
        years = r.get("years")
        rows.append({"dataset": p.key, "version": p.version, "created": r.get("created", ""),
                     "grid": r.get("grid", ""), "years": "–".join(str(y) for y in years)
                     if years else "", "domain": r.get("domain_name", r.get("domain", "")),
                     "carbonsink": code_version(p, attrs.get(p.key)),
                     "description": r.get("description", "")})
    return pd.DataFrame(rows)


def configurations(shown: list[Published]) -> dict[str, dict]:
    """The run configurations of the datasets shown, by config hash (no secrets)."""
    out: dict[str, dict] = {}
    for p in shown:
        cfg = p.record.get("config")
        if cfg:
            out.setdefault(str(p.record.get("config_hash", "")), scrub(cfg))
    return out


def input_sources(c: Contents, attrs: dict[str, dict]) -> list[tuple[str, dict]]:
    """(title, facts) of where the inputs came from: the inputs' own provenance (synthetic
    generator, or the ingest manifest and its source files) and each compared product's files."""
    out = []
    if c.inputs is not None:
        a = attrs.get(c.inputs.key, {})
        facts = {"dataset": f"{c.inputs.key}@{c.inputs.version}",
                 "description": c.inputs.record.get("description", ""),
                 "title": a.get("title", ""), "source": a.get("source", ""),
                 "history": a.get("history", "")}
        ing = c.inputs.record.get("ingest")
        if ing:
            facts["manifest"] = ing.get("manifest_path", "")
            facts["manifest_sha256"] = ing.get("manifest_sha256", "")
            for var, files in (ing.get("sources") or {}).items():
                files = files if isinstance(files, list) else [files]
                paths = [f.get("path", f.get("url", "")) if isinstance(f, dict) else str(f)
                         for f in files]
                facts[f"files of {var}"] = f"{len(paths)}: " + ", ".join(paths[:3]) + \
                    (" …" if len(paths) > 3 else "")
        if c.inputs.record.get("attachments", {}).get("river_chemistry.csv"):
            facts["river chemistry"] = c.inputs.record["attachments"]["river_chemistry.csv"]
        out.append((f"inputs: {c.inputs.name}", scrub({k: v for k, v in facts.items() if v})))
    for comp in c.comparisons:
        r = comp.summary.record
        facts = {"manifest": r.get("manifest_title", ""),
                 "manifest_sha256": r.get("manifest_sha256", ""),
                 "reference": r.get("reference", "")}
        for src in r.get("products", []):
            facts[src.get("name", "?")] = ", ".join(
                f"{k}={src[k]}" for k in ("kind", "role", "files", "variable", "units", "sign")
                if k in src)
        out.append((f"compared products: {comp.summary.name}", scrub(facts)))
    return out
