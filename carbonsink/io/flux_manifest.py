"""The flux-product manifest of the bottom-up vs top-down comparison (SCIENCE.md §8): its pydantic
models, the checks made before any file is opened (names, reference, sign words, units) and the
resolution of file patterns into each member's files. The format is described in
:mod:`carbonsink.io.fluxes`, which reads what a manifest names.

Sign words: ``uptake_positive`` (= sink_positive, NEP, NBP: productivities, positive = gain by the
land) and ``emission_positive`` (= source_positive, NEE, NBE: exchanges, positive = flux to the
atmosphere; the OCO-2 MIP's ``land`` and CarbonTracker's ``bio_flux_opt`` are this). A product
without a sign is refused: guessing it flips a sink into a source.

Units are a carbon amount per area (through the one unit table, :mod:`carbonsink.units`: mol of
CO₂ or C → 12.011 g C) per period (s, d, month, yr: :func:`carbonsink.io.manifest.split_rate`).
"""
from __future__ import annotations

import fnmatch
import glob
import os
import re
import string
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import units as u
from ..domains import get_domain
from ..grid import parse_resolution
from .manifest import _resolve_domain, split_rate
from .names import InvalidName, validate_name
from .validate import InputError

SIGNS = {"uptake_positive": 1.0, "sink_positive": 1.0, "nep": 1.0, "nbp": 1.0,
         "emission_positive": -1.0, "source_positive": -1.0, "nee": -1.0, "nbe": -1.0}
KINDS = ("bottom_up", "top_down")
TIME_AXES = ("cf", "start_date", "mid_month")
RESERVED_NAMES = ("summary",)


class FluxInputError(InputError):
    """A flux product that cannot be used: names the product, the file and the problem."""

    def __init__(self, product: str | None, source: str | None, problem: str):
        self.product = self.variable = product
        self.source, self.problem = source, problem
        what = f"flux product {product!r}" if product else "flux manifest"
        ValueError.__init__(self, f"{what}{f' ({source})' if source else ''}: {problem}")

    def __reduce__(self):
        return (type(self), (self.product, self.source, self.problem))


# --- the manifest ----------------------------------------------------------------------------------
class LandCoverSpec(BaseModel):
    """A class map (any regular lat/lon grid) → majority classes on the comparison grid."""

    model_config = ConfigDict(extra="forbid")
    files: str
    variable: str
    classes: dict[int, str] = Field(description="code → class name; several codes may share one")
    other: str = "other"


class ProductSpec(BaseModel):
    """One flux product (possibly an ensemble of members)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal[KINDS]  # type: ignore[valid-type]
    files: str = ""
    variable: str
    # carbonsink's own published product (annual, e.g. nep or sink) instead of files: the store
    # (path or URL, relative to the manifest) and the product's published name and version
    store: str | None = None
    product: str | None = None
    version: str = "latest"
    units: str | None = None
    sign: str | None = None
    members: list[str] | str | None = None
    exclude_members: list[str] = Field(default_factory=lambda: ["EnsMean", "EnsStd"])
    time: Literal[TIME_AXES] = "cf"  # type: ignore[valid-type]
    start_date_variable: str = "start_date"
    role: Literal["flux", "spread"] = "flux"
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        try:
            validate_name(v, "product name")
        except InvalidName as e:
            raise ValueError(str(e)) from None
        if v in RESERVED_NAMES:
            raise ValueError(f"product name {v!r} is reserved")
        return v


class FluxManifest(BaseModel):
    """A validated flux-product manifest (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    grid: str = "1"
    domain: str = "china"
    years: tuple[int, int]
    reference: str | None = None
    landcover: LandCoverSpec | None = None
    products: list[ProductSpec]
    root: str | None = None       # directory of relative paths (set from the manifest's path)

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, v):
        return str(v)

    @field_validator("years", mode="before")
    @classmethod
    def _years(cls, v):
        if isinstance(v, int):
            return (v, v)
        if isinstance(v, str):
            a, _, b = v.partition("-")
            try:
                return (int(a), int(b or a))
            except ValueError:
                raise ValueError(f"years {v!r}: write FIRST-LAST, e.g. 2015-2019") from None
        return v

    @field_validator("years")
    @classmethod
    def _order(cls, v):
        if v[1] < v[0]:
            raise ValueError(f"years {v} run backwards")
        return v

    @property
    def year_list(self) -> list[int]:
        return list(range(self.years[0], self.years[1] + 1))

    def product(self, name: str) -> ProductSpec:
        return next(p for p in self.products if p.name == name)

    def resolve(self, pattern: str) -> str:
        pattern = os.path.expanduser(pattern)
        return pattern if os.path.isabs(pattern) else os.path.join(self.root or os.getcwd(),
                                                                   pattern)


def load_flux_manifest(manifest) -> FluxManifest:
    """A :class:`FluxManifest` from a YAML path (or YAML text), a dict or a FluxManifest, checked
    (names, reference, signs, units) before any file is opened; :class:`FluxInputError` otherwise.
    Relative paths: from the YAML file's directory, else ``root``, else the working directory."""
    if isinstance(manifest, FluxManifest):
        return manifest
    where, root = None, None
    if isinstance(manifest, str) and "\n" in manifest:          # YAML text
        try:
            manifest = yaml.safe_load(manifest)
        except yaml.YAMLError as e:
            raise FluxInputError(None, None, f"not valid YAML: {e}") from None
    if isinstance(manifest, (str, os.PathLike)):
        where = os.fspath(manifest)
        try:
            with open(where) as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise FluxInputError(None, where, f"cannot read the manifest: {e}") from None
        except yaml.YAMLError as e:
            raise FluxInputError(None, where, f"not valid YAML: {e}") from None
        root = os.path.dirname(os.path.abspath(where))
    else:
        data = manifest
    if not isinstance(data, dict):
        raise FluxInputError(None, where, "the manifest must be a mapping")
    data = dict(data)
    if root is not None:
        data.setdefault("root", root)
    try:
        m = FluxManifest(**data)
    except ValidationError as e:
        raise _manifest_error(e, data, where) from None
    if m.root is not None and not os.path.isabs(m.root):
        m.root = os.path.abspath(m.root)
    try:
        m.domain = _resolve_domain(m.domain, os.path.join(m.root, "manifest") if m.root else None)
        get_domain(m.domain)
        parse_resolution(m.grid)
    except ValueError as e:
        raise FluxInputError(None, where, f"invalid manifest: {e}") from None
    _check_products(m, where)
    return m


def _manifest_error(e: ValidationError, data: dict, where) -> FluxInputError:
    problems, product = [], None
    for err in e.errors():
        loc = err["loc"]
        if len(loc) >= 2 and loc[0] == "products" and isinstance(loc[1], int):
            try:
                product = product or str(data["products"][loc[1]].get("name"))
            except (KeyError, IndexError, AttributeError, TypeError):
                pass
        text = ".".join(str(x) for x in loc)
        problems.append(f"{text}: {err['msg'].removeprefix('Value error, ')}")
    return FluxInputError(product, where, "invalid manifest: " + "; ".join(problems))


def sign_factor(sign: str | None) -> float:
    """+1 for uptake-positive declarations, −1 for emission-positive ones; ValueError otherwise."""
    if sign is None or not str(sign).strip():
        raise ValueError("the sign convention is undeclared: say `sign: uptake_positive` or "
                         "`sign: emission_positive` (or the quantity: NEP, NBP, NEE, NBE)")
    key = str(sign).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in SIGNS:
        raise ValueError(f"unknown sign convention {sign!r}: use uptake_positive or "
                         "emission_positive (or NEP, NBP = uptake-positive; NEE, NBE = "
                         "emission-positive)")
    return SIGNS[key]


def rate_plan(units: str) -> tuple[float, str]:
    """(factor to g C m-2 per basis period, basis) of a declared flux unit; UnitError if the
    unit table does not know it or it is not a carbon amount per area per time."""
    amount, basis = split_rate(units)
    if basis is None:
        try:
            u.lookup(units)
        except u.UnitError:
            raise u.UnitError(f"unknown units {units!r}: the unit table knows carbon per area "
                              "(g C m-2, kg C m-2, mol m-2, …) per s, d, month or yr") from None
        raise u.UnitError(f"units {units!r} are not a rate: declare the period, e.g. "
                          "'g C m-2 month-1', 'g C m-2 d-1', 'kg C m-2 s-1' or 'mol m-2 s-1'")
    if basis == "hour":
        raise u.UnitError(f"units {units!r}: hourly rates of monthly files are not supported")
    try:
        factor, _ = u.conversion(amount, "g c m-2")
    except u.UnitError as e:
        raise u.UnitError(f"unknown units {units!r}: {e}") from None
    return factor, basis


def _check_products(m: FluxManifest, where):
    names = [p.name for p in m.products]
    if not names:
        raise FluxInputError(None, where, "no products")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FluxInputError(dup[0], where, "the product name is used twice")
    for p in m.products:
        if p.store is not None:
            if not p.product:
                raise FluxInputError(p.name, where, "a store product needs `product` (the "
                                     "published name, e.g. nep or sink)")
            if p.files:
                raise FluxInputError(p.name, where, "give `files` or `store`, not both")
            if p.sign is None:
                p.sign = "uptake_positive"      # carbonsink's NEP and sink are uptake-positive
        elif not p.files:
            raise FluxInputError(p.name, where, "no `files` (or `store` + `product` for a "
                                 "carbonsink product)")
        try:
            sign_factor(p.sign)
        except ValueError as e:
            raise FluxInputError(p.name, where, str(e)) from None
        if p.units is not None:
            try:
                rate_plan(p.units)
            except u.UnitError as e:
                raise FluxInputError(p.name, where, str(e)) from None
    if m.reference is not None:
        if m.reference not in names:
            raise FluxInputError(None, where, f"reference {m.reference!r} is not a product "
                                 f"({names})")
        if m.product(m.reference).role != "flux":
            raise FluxInputError(m.reference, where, "a spread product cannot be the reference")


# --- files -------------------------------------------------------------------------------------------
def _fields(template: str) -> list[tuple[str, str]]:
    return [(f, spec or "") for _, f, spec, _ in string.Formatter().parse(template) if f]


def _to_glob(template: str, **known) -> str:
    """``template`` with known placeholders filled and the others as ``*``."""
    out = []
    for literal, fname, spec, _ in string.Formatter().parse(template):
        out.append(literal)
        if fname is None:
            continue
        out.append(format(known[fname], spec or "") if fname in known else "*")
    return "".join(out)


def _member_regex(template: str) -> re.Pattern:
    parts = []
    for literal, fname, _spec, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if fname == "member":
            parts.append(r"(?P<member>[^/\\]+?)")
        elif fname is not None:
            parts.append(r".*?")
    return re.compile("".join(parts) + r"\Z")


def resolve_files(spec: ProductSpec, m: FluxManifest) -> dict[str, list[str]]:
    """Member name ("" for a single product) → its files, in the order read."""
    template = m.resolve(spec.files)
    fields = {f for f, _ in _fields(template)}
    unknown = fields - {"year", "month", "member"}
    if unknown:
        raise FluxInputError(spec.name, spec.files, f"unknown placeholders {sorted(unknown)}; "
                             "use {year}, {month} and {member}")
    if "member" in fields:
        if spec.members is None:
            raise FluxInputError(spec.name, spec.files, "the files name {member}: list the "
                                 "members or give a member glob (members: '*')")
        if isinstance(spec.members, list):
            members = list(spec.members)
        else:
            rx = _member_regex(template)
            found = set()
            for path in glob.glob(_to_glob(template)):
                hit = rx.match(path)
                if hit and fnmatch.fnmatchcase(hit.group("member"), spec.members):
                    found.add(hit.group("member"))
            members = sorted(found - set(spec.exclude_members))
            if not members:
                raise FluxInputError(spec.name, _to_glob(template),
                                     f"no member file matches (member glob {spec.members!r})")
    else:
        if spec.members not in (None, [], ""):
            raise FluxInputError(spec.name, spec.files, "members are given but the file "
                                 "pattern has no {member} placeholder")
        members = [""]
    out = {}
    for member in members:
        known = {"member": member} if member else {}
        if fields & {"year", "month"}:
            paths, missing = [], []
            months = range(1, 13) if "month" in fields else [None]
            for year in m.year_list:
                for month in months:
                    pattern = _to_glob(template, year=year, **known,
                                       **({"month": month} if month else {}))
                    hits = sorted(glob.glob(pattern))
                    if not hits:
                        missing.append(f"{year}" + (f"-{month:02d}" if month else ""))
                    elif len(hits) > 1:
                        raise FluxInputError(spec.name, pattern, f"{len(hits)} files match one "
                                             f"period: {[os.path.basename(h) for h in hits[:4]]}")
                    else:
                        paths.extend(hits)
            if missing:
                raise FluxInputError(spec.name, _to_glob(template, **known),
                                     f"missing months: no file for {_ranges(missing)}")
        else:
            paths = sorted(glob.glob(_to_glob(template, **known)))
            if not paths:
                raise FluxInputError(spec.name, _to_glob(template, **known), "no file matches")
        out[member] = paths
    return out


def _ranges(items: list[str]) -> str:
    return ", ".join(items[:6]) + (f" … ({len(items)} in all)" if len(items) > 6 else "")
