"""Enhancement measures and scenarios (SCIENCE.md §9, seed 002): read, check, canonicalise.

Catalogue
---------
``load_measures(path=None)`` reads the package catalogue ``carbonsink/data/measures.yaml`` (the 31
management measures of seed 002 table 1, plus the seed's other quantified pathways) or a user's
YAML or CSV file, and returns :class:`Measure` dataclasses. A user YAML may say ``extends: default``
(or ``extends: <path>``, relative to the file): its entries then override the base entries of the
same ``id`` field by field (a top-level key given replaces the base's value; keys not given are
kept) and entries with a new ``id`` are added. A CSV is a full catalogue unless
``load_measures(..., extends="default")`` is passed.

YAML layout::

    version: "1.0.0"
    source: <citation>
    units: {<field>: <note>}                  # free text, documentation only
    extends: default                          # optional (user files)
    measures: [<entry>, ...]                  # management measures (seed table 1 and users')
    pathways: [<entry>, ...]                  # other routes (Eco-CCUS, sinks not yet counted)

Entry fields (unknown fields are errors, so a typo cannot be silently ignored):

``id``               snake_case, unique across the file (measures and pathways together)
``name``, ``name_zh`` English name; the seed's Chinese wording
``ecosystem``        forest | grassland | cropland | wetland | coastal (pathways may also be
                     urban | marine | inorganic | other)
``table_row``        row of seed table 1 within its ecosystem; an entry with a table_row must
                     carry every star column and ``ipcc``
``stars_sink``, ``stars_maturity``, ``stars_environment``, ``stars_social``, ``stars_scale``,
``stars_assessment_difficulty``, ``stars_overall``
                     integers 1–3, the table's columns in order (more stars = better, except
                     assessment difficulty where more stars = harder)
``ipcc``             bool, whether IPCC inventories accept the measure (table's last column)
``potential_gt_co2`` national potential at full implementation, Gt CO₂ a⁻¹: ``{low, central,
                     high}``, ``[low, central, high]``, ``[low, high]`` (central = midpoint), a
                     number (all three) or null
``potential_group``  one potential the source gives for several measures jointly: every member
                     carries the same potential and a scenario's ``potential_share`` over the
                     group sums to at most 1
``rate_t_c_ha``      t C ha⁻¹ a⁻¹ on the area treated, same forms as the potential, or null
``applies_to``       list of land-use codes (secondary, e.g. 12) or primary classes (e.g. 1) of
                     the land-use class table; [] = not on the land-use map
``eligibility``      ``{min_|max_ slope_deg | elevation_m | precipitation_mm: number}``, bounds
                     inclusive, all must hold (:func:`eligibility_mask`)
``converts_to``      land-use code left behind by a land-use change, or null
``ramp_years``       ≥ 0 (default 0), ``saturation_years`` ≥ ramp_years or null (never; default),
                     ``decline_years`` ≥ 0 (default 0) — the shape of
                     :func:`carbonsink.kernels.scenarios.ramp`; saturation counts from the start year
``kind``             pathways only: eco_ccus | unaccounted_sink
``counted_in``       carbonsink variables that already hold this sink (a scenario whose baseline
                     is one of them refuses the measure unless ``allow_double_count``)
``components_gt_co2`` named parts of the potential (documentation)
``source``           text or a mapping of field → citation; ``notes`` free text

CSV columns: the same names, with ``potential_low/central/high`` and ``rate_low/central/high``,
lists separated by ``;`` (``applies_to = 12;11``), ``eligibility = min_slope_deg=25;…`` and
``kind`` (empty or ``measure`` = a measure, else a pathway kind). Empty cells are null.

Checks (each raises :class:`MeasureError` naming the file, the measure id and the field): missing
or unknown fields, ids that are not snake_case or are duplicated, unknown ecosystem or kind, stars
outside 1–3, ``ipcc`` not a bool, negative or non-finite rates / potentials, ``low ≤ central ≤
high`` violated, negative ramp / decline, saturation before the end of the ramp, ``applies_to`` or
``converts_to`` codes absent from the land-use class table (``classes`` argument, default
:func:`carbonsink.io.services_tables.read_classes`), unknown eligibility keys or min > max, members
of a potential group with different potentials, two entries on the same table row.

Scenario
--------
``load_scenario(path_or_dict, measures=None)`` reads::

    name: double_the_sink
    years: 2020-2060                         # or [2020, 2060] or {start: 2020, end: 2060}
    target_gt_co2: [2.0, 2.5]                # default: the seed's band
    target_years: [2050, 2060]               # default: the seed's window
    baseline: {gt_co2: 1.1}                  # or [1.0, 1.15, 1.3] / {low, central, high};
                                             # optional `variable:` names what the number is
    # baseline: {store: s3://…, product: sink, variable: ecosystem_sink}   (the caller resolves)
    measures:
      - {id: no_tillage, share_of_eligible: 0.5, start_year: 2025}
      - {id: afforestation_reforestation, area_ha: 2.0e7, start_year: 2025, ramp_years: 15}
      - {id: natural_grassland_enclosure, potential_share: 1.0, start_year: 2025,
         saturation_years: 20, decline_years: 5}

Each scenario measure gives exactly one amount: ``share_of_eligible`` (0–1 of the eligible area,
needs a rate and a non-empty ``applies_to``), ``area_ha`` (≥ 0, needs a rate) or
``potential_share`` (0–1 of the national potential, needs a potential). ``start_year`` defaults to
the scenario's first year; ``ramp_years``, ``saturation_years`` (null = none) and
``decline_years`` override the catalogue's pace. An id may appear several times (tranches).
Checks: unknown fields or measure ids, two amounts in one entry, shares outside 0–1, years outside
2000–2100, a start after the end (scenario or measure), target years outside the scenario's
years, an area-based measure without rate, a potential share without potential, shares of one
measure (or potential group) summing above 1, a measure already counted in the baseline variable.

Area larger than eligible
-------------------------
Only the spatial part knows the eligible area. Definition: ``eligible_ha`` of a measure is the
true (spherical) area, in ha, of the cells whose land-use code, or its primary class, is in
``applies_to`` and that pass its ``eligibility`` rule (:func:`eligibility_mask`) on the land-use
map the allocation starts from (by default the run's last year, ``scenarios.allocation_year``).
An ``area_ha`` request is too large when the sum of the ``area_ha`` of every entry of that id exceeds
``eligible_ha × (1 + 1e-6)`` (the tolerance absorbs float rounding of summed cell areas, nothing
more). The caller computes
``eligible_ha`` and calls :func:`check_area` for each id given by area (``projection_inputs`` does
it when given ``eligible_ha``); ``share_of_eligible`` can never exceed it. Overlaps *between*
measures competing for the same cells (no-till and reduced tillage on the same field) are the
allocation's business, not checked here.
"""
from __future__ import annotations

import csv
import difflib
import io
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from .validate import InputError

__all__ = [
    "DEFAULT_CATALOGUE",
    "ECOSYSTEMS",
    "ELIGIBILITY_KEYS",
    "PATHWAY_ECOSYSTEMS",
    "PATHWAY_KINDS",
    "STAR_FIELDS",
    "TABLE1_COUNTS",
    "Baseline",
    "Measure",
    "MeasureError",
    "Range",
    "Scenario",
    "ScenarioMeasure",
    "check_area",
    "eligibility_mask",
    "load_measures",
    "load_scenario",
    "measures_by_id",
    "projection_inputs",
]

DEFAULT_CATALOGUE = "measures.yaml"
ECOSYSTEMS = ("forest", "grassland", "cropland", "wetland", "coastal")
PATHWAY_ECOSYSTEMS = ECOSYSTEMS + ("urban", "marine", "inorganic", "other")
PATHWAY_KINDS = ("eco_ccus", "unaccounted_sink")
TABLE1_COUNTS = {"forest": 8, "grassland": 7, "cropland": 6, "wetland": 6, "coastal": 4}
STAR_FIELDS = ("stars_sink", "stars_maturity", "stars_environment", "stars_social", "stars_scale",
               "stars_assessment_difficulty", "stars_overall")
_COVARIATES = ("slope_deg", "elevation_m", "precipitation_mm")
ELIGIBILITY_KEYS = tuple(f"{b}_{c}" for c in _COVARIATES for b in ("min", "max"))
YEAR_MIN, YEAR_MAX = 2000, 2100
SEED_TARGET_GT_CO2 = (2.0, 2.5)
SEED_TARGET_YEARS = (2050, 2060)
AREA_RTOL = 1e-6
_SHARE_ATOL = 1e-9

_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_ENTRY_FIELDS = {"id", "name", "name_zh", "ecosystem", "table_row", *STAR_FIELDS, "ipcc",
                 "potential_gt_co2", "potential_group", "rate_t_c_ha", "applies_to",
                 "eligibility", "converts_to", "ramp_years", "saturation_years", "decline_years",
                 "kind", "counted_in", "components_gt_co2", "source", "notes"}
_DOC_FIELDS = {"version", "source", "units", "extends", "measures", "pathways", "notes"}
_SCENARIO_FIELDS = {"name", "description", "years", "target_gt_co2", "target_years", "baseline",
                    "measures"}
_SCENARIO_MEASURE_FIELDS = {"id", "share_of_eligible", "area_ha", "potential_share",
                            "start_year", "ramp_years", "saturation_years", "decline_years",
                            "allow_double_count", "label"}
_AMOUNTS = ("share_of_eligible", "area_ha", "potential_share")


class MeasureError(InputError):
    """A catalogue, scenario or area that cannot be used; names the file, the measure, the field."""

    def __init__(self, source: str | None, measure: str | None, field: str | None, problem: str):
        InputError.__init__(self, field, source, problem)
        self.measure = measure
        self.field = field

    def __str__(self):
        where = [self.source or "measures"]
        if self.measure is not None:
            where.append(f"measure {self.measure!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.problem}"

    def __reduce__(self):
        return (type(self), (self.source, self.measure, self.field, self.problem))


# --- dataclasses ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """A low / central / high triple (low ≤ central ≤ high)."""

    low: float
    central: float
    high: float

    def as_array(self) -> np.ndarray:
        return np.array([self.low, self.central, self.high], dtype="f8")


@dataclass(frozen=True)
class Measure:
    """One catalogue entry (see the module docstring for the fields)."""

    id: str
    name: str
    name_zh: str
    ecosystem: str
    kind: str = "measure"                       # measure | eco_ccus | unaccounted_sink
    table_row: int | None = None
    stars_sink: int | None = None
    stars_maturity: int | None = None
    stars_environment: int | None = None
    stars_social: int | None = None
    stars_scale: int | None = None
    stars_assessment_difficulty: int | None = None
    stars_overall: int | None = None
    ipcc: bool | None = None
    potential_gt_co2: Range | None = None
    potential_group: str | None = None
    rate_t_c_ha: Range | None = None
    applies_to: tuple[int, ...] = ()
    eligibility: dict = field(default_factory=dict, hash=False)
    converts_to: int | None = None
    ramp_years: float = 0.0
    saturation_years: float | None = None
    decline_years: float = 0.0
    counted_in: tuple[str, ...] = ()
    components_gt_co2: dict = field(default_factory=dict, hash=False)
    source: dict = field(default_factory=dict, hash=False)
    notes: str = ""
    catalogue: str = ""                         # the file the entry came from

    @property
    def in_table1(self) -> bool:
        return self.kind == "measure" and self.table_row is not None

    @property
    def is_pathway(self) -> bool:
        return self.kind != "measure"

    @property
    def quantified(self) -> bool:
        return self.potential_gt_co2 is not None or self.rate_t_c_ha is not None

    @property
    def changes_land_use(self) -> bool:
        return self.converts_to is not None


@dataclass(frozen=True)
class Baseline:
    """The sink the measures add to: a number (Gt CO₂ a⁻¹, low/central/high) or a store product
    the caller resolves (``resolved`` is False until then)."""

    gt_co2: Range | None = None
    store: str | None = None
    product: str | None = None
    variable: str | None = None

    @property
    def resolved(self) -> bool:
        return self.gt_co2 is not None


@dataclass(frozen=True)
class ScenarioMeasure:
    """One measure of a scenario: exactly one of the three amounts is set."""

    id: str
    measure: Measure
    start_year: int
    ramp_years: float
    saturation_years: float | None
    decline_years: float
    share_of_eligible: float | None = None
    area_ha: float | None = None
    potential_share: float | None = None
    allow_double_count: bool = False
    label: str = ""

    @property
    def mode(self) -> str:
        return next(a for a in _AMOUNTS if getattr(self, a) is not None)

    @property
    def uses_potential(self) -> bool:
        return self.potential_share is not None


@dataclass(frozen=True)
class Scenario:
    name: str
    start_year: int
    end_year: int
    target_gt_co2: tuple[float, float]
    target_years: tuple[int, int]
    baseline: Baseline
    measures: tuple[ScenarioMeasure, ...]
    description: str = ""
    source: str = ""

    def years(self) -> np.ndarray:
        return np.arange(self.start_year, self.end_year + 1, dtype=np.int64)


# --- reading ----------------------------------------------------------------------------------
def _default_bytes() -> bytes:
    return resources.files("carbonsink").joinpath("data", DEFAULT_CATALOGUE).read_bytes()


def _label(path) -> str:
    return "the default measure catalogue" if path is None else str(path)


def _class_codes(classes) -> tuple[set[int], set[int]]:
    """(secondary codes, primary classes) of a land-use class table (DataFrame, CSV path/bytes or
    None for the default CNLUCC table)."""
    from .services_tables import read_classes
    df = read_classes(classes)
    return {int(c) for c in df["code"]}, {int(p) for p in df["primary"]}


def _yaml(text: bytes | str, source: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MeasureError(source, None, None, f"is not valid YAML: {e}") from e


def _read_doc(path) -> tuple[dict, str]:
    """The raw document of a catalogue file (YAML mapping, YAML list of entries, or CSV)."""
    if path is None:
        return _yaml(_default_bytes(), _label(None)), _label(None)
    if isinstance(path, str) and path.strip().lower() == "default":
        return _read_doc(None)
    src = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise MeasureError(src, None, None, f"cannot be read: {e}") from e
    if Path(path).suffix.lower() == ".csv":
        return _csv_doc(text, src), src
    doc = _yaml(text, src)
    if isinstance(doc, list):
        doc = {"measures": doc}
    if not isinstance(doc, dict):
        raise MeasureError(src, None, None, "must be a mapping with `measures:` (and optionally "
                                            "`pathways:`, `extends:`) or a list of measures")
    return doc, src


_CSV_TRIPLES = {"potential": "potential_gt_co2", "rate": "rate_t_c_ha"}


def _csv_doc(text: str, src: str) -> dict:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise MeasureError(src, None, None, "is an empty CSV")
    triple_cols = {f"{p}_{k}" for p in _CSV_TRIPLES for k in ("low", "central", "high")}
    allowed = (_ENTRY_FIELDS - set(_CSV_TRIPLES.values())) | triple_cols
    for c in reader.fieldnames:
        if c.strip() not in allowed:
            raise MeasureError(src, None, c, f"unknown column (allowed: {sorted(allowed)})")
    measures, pathways = [], []
    for row in reader:
        row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        mid = row.get("id") or None
        entry = {}
        for k, v in row.items():
            if v in (None, "") or k in triple_cols:
                continue
            if k in ("applies_to", "counted_in"):
                parts = [p for p in re.split(r"[;\s]+", v) if p]
                entry[k] = [_csv_number(p, src, mid, k) if k == "applies_to" else p for p in parts]
            elif k == "eligibility":
                rule = {}
                for part in (p for p in v.split(";") if p.strip()):
                    if "=" not in part:
                        raise MeasureError(src, mid, k, f"{part!r} is not key=value")
                    key, val = (s.strip() for s in part.split("=", 1))
                    rule[key] = _csv_number(val, src, mid, k)
                entry[k] = rule
            elif k in ("ipcc",):
                entry[k] = _csv_bool(v, src, mid, k)
            elif k in ("table_row", *STAR_FIELDS, "converts_to", "ramp_years",
                       "saturation_years", "decline_years"):
                entry[k] = _csv_number(v, src, mid, k)
            else:
                entry[k] = v
        for prefix, name in _CSV_TRIPLES.items():
            vals = {s: row.get(f"{prefix}_{s}") for s in ("low", "central", "high")}
            if any(v not in (None, "") for v in vals.values()):
                entry[name] = {s: (None if v in (None, "") else _csv_number(v, src, mid, name))
                               for s, v in vals.items()}
        kind = entry.get("kind", "measure")
        (measures if kind in ("", "measure") else pathways).append(entry)
        if kind in ("", "measure"):
            entry.pop("kind", None)
    return {"measures": measures, "pathways": pathways}


def _csv_number(v, src, mid, fld):
    try:
        x = float(v)
    except ValueError:
        raise MeasureError(src, mid, fld, f"{v!r} is not a number") from None
    return int(x) if x.is_integer() else x


def _csv_bool(v, src, mid, fld):
    t = str(v).strip().lower()
    if t in ("true", "yes", "1", "是", "y"):
        return True
    if t in ("false", "no", "0", "否", "n"):
        return False
    raise MeasureError(src, mid, fld, f"{v!r} is not a yes/no value")


def _entries(doc: dict, src: str) -> list[tuple[dict, str]]:
    """The (raw entry, section) pairs of one document, duplicates refused."""
    for k in doc:
        if k not in _DOC_FIELDS:
            raise MeasureError(src, None, k,
                               f"unknown top-level key (allowed: {sorted(_DOC_FIELDS)})")
    out, seen = [], {}
    for section in ("measures", "pathways"):
        items = doc.get(section) or []
        if not isinstance(items, list):
            raise MeasureError(src, None, section, "must be a list of entries")
        for i, e in enumerate(items):
            if not isinstance(e, dict):
                raise MeasureError(src, None, section, f"entry {i} is not a mapping")
            mid = e.get("id")
            if not isinstance(mid, str) or not mid:
                raise MeasureError(src, None, "id", f"{section} entry {i} has no id")
            if mid in seen:
                raise MeasureError(src, mid, "id", f"duplicated id ({seen[mid]} and {section})")
            seen[mid] = section
            out.append((dict(e), section))
    return out


def _resolve(path, extends, stack=()) -> list[tuple[dict, str, dict]]:
    """(raw entry, section, field → source file) after applying ``extends`` chains."""
    doc, src = _read_doc(path)
    if src in stack:
        raise MeasureError(src, None, "extends", f"circular extends chain {list(stack) + [src]}")
    base_ref = doc.get("extends", extends)
    own = _entries(doc, src)
    if base_ref is None:
        return [(e, s, dict.fromkeys(e, src)) for e, s in own]
    if not isinstance(base_ref, str):
        raise MeasureError(src, None, "extends", "must be 'default' or a path")
    if base_ref.strip().lower() == "default":
        base_path = None
    else:
        base_path = Path(base_ref)
        if not base_path.is_absolute() and path is not None:
            base_path = Path(path).parent / base_path
    merged = _resolve(base_path, None, stack + (src,))
    index = {e["id"]: i for i, (e, _, _) in enumerate(merged)}
    for e, section in own:
        mid = e["id"]
        if mid in index:
            be, bsec, borig = merged[index[mid]]
            origins = dict(borig)
            origins.update(dict.fromkeys(e, src))
            merged[index[mid]] = ({**be, **e}, bsec, origins)
        else:
            index[mid] = len(merged)
            merged.append((e, section, dict.fromkeys(e, src)))
    return merged


# --- field checks -----------------------------------------------------------------------------
class _Checker:
    def __init__(self, entry: dict, origins: dict, default_src: str):
        self.e, self.origins, self.default_src = entry, origins, default_src
        self.mid = entry.get("id")

    def err(self, fld, problem):
        return MeasureError(self.origins.get(fld, self.default_src), self.mid, fld, problem)

    def text(self, fld, required=True, default=""):
        v = self.e.get(fld)
        if v is None:
            if required:
                raise self.err(fld, "missing")
            return default
        if not isinstance(v, str) or (required and not v.strip()):
            raise self.err(fld, f"must be a non-empty text, got {v!r}")
        return v.strip()

    def number(self, fld, v, *, minimum=0.0, allow_none=False):
        if v is None:
            if allow_none:
                return None
            raise self.err(fld, "missing")
        if isinstance(v, str) and _FLOAT.match(v.strip()):
            v = float(v)        # YAML 1.1 reads 1.0e12 (no sign in the exponent) as a string
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.err(fld, f"must be a number, got {v!r}")
        x = float(v)
        if not math.isfinite(x):
            raise self.err(fld, f"must be finite, got {v!r}")
        if minimum is not None and x < minimum:
            raise self.err(fld, f"must be ≥ {minimum:g}, got {v!r}")
        return x

    def stars(self, fld, required):
        v = self.e.get(fld)
        if v is None:
            if required:
                raise self.err(fld, "missing (a table-1 entry carries every star column)")
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v) \
                or not 1 <= int(v) <= 3:
            raise self.err(fld, f"stars must be an integer 1–3, got {v!r}")
        return int(v)

    def triple(self, fld) -> Range | None:
        v = self.e.get(fld)
        if v is None:
            return None
        if isinstance(v, dict):
            unknown = set(v) - {"low", "central", "high"}
            if unknown:
                raise self.err(fld, f"unknown keys {sorted(unknown)} (low, central, high)")
            lo, hi = v.get("low"), v.get("high")
            if lo is None or hi is None:
                raise self.err(fld, "needs low and high (central defaults to their midpoint)")
            c = v.get("central")
        elif isinstance(v, (list, tuple)):
            if len(v) == 3:
                lo, c, hi = v
            elif len(v) == 2:
                (lo, hi), c = v, None
            else:
                raise self.err(fld, f"needs [low, high] or [low, central, high], got {v!r}")
        else:
            lo = c = hi = v
        lo, hi = self.number(fld, lo, minimum=None), self.number(fld, hi, minimum=None)
        c = (lo + hi) / 2 if c is None else self.number(fld, c, minimum=None)
        for name, x in (("low", lo), ("central", c), ("high", hi)):
            if x < 0:
                raise self.err(fld, f"{name} is negative ({x:g}); rates and potentials are ≥ 0")
        if not lo <= c <= hi:
            raise self.err(fld, f"needs low ≤ central ≤ high, got {lo:g}, {c:g}, {hi:g}")
        return Range(lo, c, hi)

    def code(self, fld, v, codes, primaries, *, primary_ok):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
            raise self.err(fld, f"land-use codes are integers, got {v!r}")
        c = int(v)
        if c in codes or (primary_ok and c in primaries):
            return c
        what = "code or primary class" if primary_ok else "code"
        raise self.err(fld, f"{c} is not a land-use {what} of the class table (codes "
                            f"{sorted(codes)}, primary classes {sorted(primaries)})")


def _measure(entry: dict, section: str, origins: dict, src: str, codes, primaries) -> Measure:
    k = _Checker(entry, origins, src)
    for f in entry:
        if f not in _ENTRY_FIELDS:
            close = difflib.get_close_matches(f, sorted(_ENTRY_FIELDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise k.err(f, f"unknown field{hint}")
    mid = k.mid
    if not _ID.match(mid):
        raise k.err("id", "must be snake_case (lower-case letters, digits, _)")
    if section == "measures":
        if entry.get("kind") not in (None, "measure"):
            raise k.err("kind", "only pathways have a kind; move the entry to `pathways:`")
        kind, allowed_eco = "measure", ECOSYSTEMS
    else:
        kind = entry.get("kind")
        if kind not in PATHWAY_KINDS:
            raise k.err("kind", f"must be one of {list(PATHWAY_KINDS)}, got {kind!r}")
        allowed_eco = PATHWAY_ECOSYSTEMS
    eco = entry.get("ecosystem")
    if eco not in allowed_eco:
        raise k.err("ecosystem", f"unknown ecosystem {eco!r} (allowed: {list(allowed_eco)})")
    row = entry.get("table_row")
    if row is not None:
        if kind != "measure":
            raise k.err("table_row", "pathways are not table-1 rows")
        if isinstance(row, bool) or not isinstance(row, (int, float)) or float(row) != int(row) \
                or int(row) < 1:
            raise k.err("table_row", f"must be a positive integer, got {row!r}")
        row = int(row)
    in_table = row is not None
    stars = {f: k.stars(f, in_table) for f in STAR_FIELDS}
    ipcc = entry.get("ipcc")
    if ipcc is None:
        if in_table:
            raise k.err("ipcc", "missing (a table-1 entry says whether IPCC accepts it)")
    elif not isinstance(ipcc, bool):
        raise k.err("ipcc", f"must be true or false, got {ipcc!r}")
    group = entry.get("potential_group")
    if group is not None and (not isinstance(group, str) or not _ID.match(group)):
        raise k.err("potential_group", f"must be a snake_case name, got {group!r}")
    potential = k.triple("potential_gt_co2")
    if group is not None and potential is None:
        raise k.err("potential_gt_co2", f"a member of potential group {group!r} needs the potential")
    rate = k.triple("rate_t_c_ha")
    applies = entry.get("applies_to", [])
    if applies is None:
        applies = []
    if not isinstance(applies, (list, tuple)):
        applies = [applies]
    applies = tuple(k.code("applies_to", c, codes, primaries, primary_ok=True) for c in applies)
    if len(set(applies)) != len(applies):
        raise k.err("applies_to", f"repeats a code: {list(applies)}")
    elig = entry.get("eligibility") or {}
    if not isinstance(elig, dict):
        raise k.err("eligibility", f"must be a mapping, got {elig!r}")
    rule = {}
    for key, v in elig.items():
        if key not in ELIGIBILITY_KEYS:
            raise k.err("eligibility", f"unknown rule {key!r} (allowed: {list(ELIGIBILITY_KEYS)})")
        rule[key] = k.number("eligibility", v, minimum=None)
        if key.endswith("precipitation_mm") and rule[key] < 0:
            raise k.err("eligibility", f"{key} is negative ({rule[key]:g})")
        if key.endswith("slope_deg") and not 0 <= rule[key] <= 90:
            raise k.err("eligibility", f"{key} must lie in 0–90°, got {rule[key]:g}")
    for c in _COVARIATES:
        lo, hi = rule.get(f"min_{c}"), rule.get(f"max_{c}")
        if lo is not None and hi is not None and lo > hi:
            raise k.err("eligibility", f"min_{c} {lo:g} > max_{c} {hi:g}")
    conv = entry.get("converts_to")
    if conv is not None:
        conv = k.code("converts_to", conv, codes, primaries, primary_ok=False)
    ramp = k.number("ramp_years", entry.get("ramp_years", 0.0))
    sat = k.number("saturation_years", entry.get("saturation_years"), allow_none=True)
    if sat is not None and sat < ramp:
        raise k.err("saturation_years", f"{sat:g} is before the end of the ramp ({ramp:g} years); "
                                        "saturation counts from the start year")
    decline = k.number("decline_years", entry.get("decline_years", 0.0))
    counted = entry.get("counted_in") or []
    if isinstance(counted, str):
        counted = [counted]
    if not all(isinstance(c, str) and c for c in counted):
        raise k.err("counted_in", f"must be a list of variable names, got {counted!r}")
    comps = entry.get("components_gt_co2") or {}
    if not isinstance(comps, dict):
        raise k.err("components_gt_co2", "must be a mapping name → Gt CO2 a-1")
    comps = {str(n): k.number("components_gt_co2", v) for n, v in comps.items()}
    source = entry.get("source")
    if source is None:
        source = {}
    elif isinstance(source, str):
        source = {"text": source}
    elif isinstance(source, dict):
        source = {str(a): str(b).strip() for a, b in source.items()}
    else:
        raise k.err("source", "must be a text or a mapping of field → citation")
    return Measure(
        id=mid, name=k.text("name"), name_zh=k.text("name_zh", required=in_table),
        ecosystem=eco, kind=kind, table_row=row, **stars, ipcc=ipcc,
        potential_gt_co2=potential, potential_group=group, rate_t_c_ha=rate, applies_to=applies,
        eligibility=rule, converts_to=conv, ramp_years=ramp, saturation_years=sat,
        decline_years=decline, counted_in=tuple(counted), components_gt_co2=comps, source=source,
        notes=k.text("notes", required=False), catalogue=origins.get("id", src))


def load_measures(path=None, *, classes=None, include_pathways: bool = False,
                  extends: str | None = None) -> list[Measure]:
    """The measure catalogue: the package default (``path=None`` or ``"default"``) or a user's YAML
    / CSV file (which may ``extends: default``). ``classes``: the land-use class table the codes
    are checked against (DataFrame, CSV path or bytes; default CNLUCC). Pathways (Eco-CCUS, sinks
    not yet counted) only with ``include_pathways``. Raises :class:`MeasureError`."""
    codes, primaries = _class_codes(classes)
    is_default = path is None or (isinstance(path, str) and path.strip().lower() == "default")
    resolved = _resolve(path, None if is_default else extends)
    src = _label(path)
    out = [_measure(e, section, origins, src, codes, primaries) for e, section, origins in resolved]
    _check_catalogue(out)
    if not include_pathways:
        out = [m for m in out if not m.is_pathway]
    return out


def _check_catalogue(measures: list[Measure]):
    rows, groups = {}, {}
    for m in measures:
        if m.table_row is not None:
            key = (m.ecosystem, m.table_row)
            if key in rows:
                raise MeasureError(m.catalogue, m.id, "table_row",
                                   f"{m.ecosystem} row {m.table_row} is also {rows[key]!r}")
            rows[key] = m.id
        if m.potential_group is not None:
            first = groups.setdefault(m.potential_group, m)
            if first.potential_gt_co2 != m.potential_gt_co2:
                raise MeasureError(m.catalogue, m.id, "potential_gt_co2",
                                   f"potential group {m.potential_group!r} shares one potential: "
                                   f"{first.id!r} has {first.potential_gt_co2}, this one "
                                   f"{m.potential_gt_co2}")


def measures_by_id(measures) -> dict[str, Measure]:
    """``{id: Measure}`` of a list (a dict passes through)."""
    if isinstance(measures, dict):
        return dict(measures)
    return {m.id: m for m in measures}


# --- eligibility and areas --------------------------------------------------------------------
def eligibility_mask(measure: Measure, lulc, *, slope_deg=None, elevation_m=None,
                     precipitation_mm=None, classes=None) -> np.ndarray:
    """Boolean array: cells whose land-use code or its primary class is in ``applies_to`` and that
    satisfy every rule of ``eligibility`` (bounds inclusive; NaN covariates fail). A rule whose
    covariate is not given raises :class:`MeasureError`. ``classes``: the class table giving each
    code's primary class (default CNLUCC; codes absent from it use their first digit)."""
    from .services_tables import primary_of, read_classes
    lulc = np.asarray(lulc)
    if not measure.applies_to:
        return np.zeros(lulc.shape, dtype=bool)
    table = read_classes(classes)
    codes = np.where(np.isfinite(lulc), lulc, -1).astype(np.int64) if lulc.dtype.kind == "f" \
        else lulc.astype(np.int64)
    targets = np.asarray(measure.applies_to, dtype=np.int64)
    prim = primary_of(np.maximum(codes, 0), table)
    mask = (np.isin(codes, targets) | np.isin(prim, targets)) & (codes >= 0)
    covs = {"slope_deg": slope_deg, "elevation_m": elevation_m,
            "precipitation_mm": precipitation_mm}
    for key, bound in measure.eligibility.items():
        side, cov = key.split("_", 1)
        arr = covs[cov]
        if arr is None:
            raise MeasureError(measure.catalogue, measure.id, "eligibility",
                               f"rule {key} needs the {cov} covariate, which was not given")
        arr = np.asarray(arr, dtype="f8")
        with np.errstate(invalid="ignore"):
            ok = arr >= bound if side == "min" else arr <= bound
        mask &= ok & np.isfinite(arr)
    return mask


def check_area(measure_id: str, area_ha: float, eligible_ha: float, *,
               source: str | None = None, rtol: float = AREA_RTOL) -> float:
    """``area_ha`` if it fits in ``eligible_ha`` (both ha; see the module docstring for the
    definition of the eligible area), else :class:`MeasureError` on field ``area_ha``. The spatial
    part calls it with the summed ``area_ha`` of every entry of the measure."""
    where = source or "scenario"
    for name, v in (("area_ha", area_ha), ("eligible_ha", eligible_ha)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not math.isfinite(float(v)) or float(v) < 0:
            raise MeasureError(where, measure_id, name, f"must be a finite number ≥ 0, got {v!r}")
    area_ha, eligible_ha = float(area_ha), float(eligible_ha)
    if area_ha > eligible_ha * (1.0 + rtol):
        raise MeasureError(where, measure_id, "area_ha",
                           f"{area_ha:.6g} ha is larger than the eligible area {eligible_ha:.6g} ha "
                           f"(by {area_ha - eligible_ha:.6g} ha)")
    return area_ha


# --- scenarios --------------------------------------------------------------------------------
def _year(v, src, mid, fld) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
        raise MeasureError(src, mid, fld, f"a year is an integer, got {v!r}")
    y = int(v)
    if not YEAR_MIN <= y <= YEAR_MAX:
        raise MeasureError(src, mid, fld, f"{y} is outside {YEAR_MIN}–{YEAR_MAX}")
    return y


def _year_pair(v, src, fld, keys=("start", "end")) -> tuple[int, int]:
    if isinstance(v, str):
        parts = [p for p in re.split(r"\s*(?:-|–|—|to|\.\.)\s*", v.strip()) if p]
        try:
            v = [int(p) for p in parts]
        except ValueError:
            raise MeasureError(src, None, fld, f"{v!r} is not 'YYYY-YYYY'") from None
    if isinstance(v, dict):
        if set(v) != set(keys):
            raise MeasureError(src, None, fld, f"needs exactly {list(keys)}, got {sorted(v)}")
        v = [v[keys[0]], v[keys[1]]]
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise MeasureError(src, None, fld, f"needs two years (first, last), got {v!r}")
    a, b = _year(v[0], src, None, fld), _year(v[1], src, None, fld)
    if a > b:
        raise MeasureError(src, None, fld, f"starts after it ends ({a} > {b})")
    return a, b


def _baseline(v, src) -> Baseline:
    if not isinstance(v, dict):
        raise MeasureError(src, None, "baseline",
                           "must be {gt_co2: …} or {store: …, product: …, variable: …}")
    unknown = set(v) - {"gt_co2", "store", "product", "variable"}
    if unknown:
        raise MeasureError(src, None, "baseline", f"unknown keys {sorted(unknown)}")
    has_num, has_store = "gt_co2" in v, "store" in v or "product" in v
    if has_num == has_store:
        raise MeasureError(src, None, "baseline",
                           "give either gt_co2 (a number) or product (a product of this run, or "
                           "of another store)")
    if has_num:
        k = _Checker({"id": None, "baseline": v["gt_co2"]}, {}, src)
        rng = k.triple("baseline")
        return Baseline(gt_co2=rng, variable=v.get("variable"))
    store = v.get("store", "run")       # "run": the product of the run the scenario is part of
    if not isinstance(store, str) or not store.strip():
        raise MeasureError(src, None, "baseline", f"store must be a path or URL, got {store!r}")
    return Baseline(store=store, product=str(v.get("product", "sink")),
                    variable=str(v.get("variable", "ecosystem_sink")))


def _scenario_measure(e, i, src, catalogue, start, end, baseline) -> ScenarioMeasure:
    if not isinstance(e, dict):
        raise MeasureError(src, None, "measures", f"entry {i} is not a mapping")
    mid = e.get("id")
    if not isinstance(mid, str):
        raise MeasureError(src, None, "id", f"measures entry {i} has no id")
    for f in e:
        if f not in _SCENARIO_MEASURE_FIELDS:
            raise MeasureError(src, mid, f,
                               f"unknown field (allowed: {sorted(_SCENARIO_MEASURE_FIELDS)})")
    if mid not in catalogue:
        close = difflib.get_close_matches(mid, sorted(catalogue), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise MeasureError(src, mid, "id", f"unknown measure id{hint}")
    m = catalogue[mid]
    given = [a for a in _AMOUNTS if e.get(a) is not None]
    if len(given) != 1:
        raise MeasureError(src, mid, given[1] if len(given) > 1 else "area_ha",
                           f"give exactly one of {list(_AMOUNTS)}, got {given or 'none'}")
    amount = given[0]
    k = _Checker(e, {}, src)
    val = k.number(amount, e[amount])
    if amount in ("share_of_eligible", "potential_share") and val > 1:
        raise MeasureError(src, mid, amount, f"a share lies in 0–1, got {val:g}")
    if amount in ("share_of_eligible", "area_ha") and m.rate_t_c_ha is None:
        raise MeasureError(src, mid, amount,
                           "an area-based measure needs a rate (rate_t_c_ha) and the catalogue "
                           "has none; give a rate in your catalogue or use potential_share")
    if amount == "share_of_eligible" and not m.applies_to:
        raise MeasureError(src, mid, amount,
                           "the measure is not on the land-use map (applies_to is empty): "
                           "give area_ha")
    if amount == "potential_share" and m.potential_gt_co2 is None:
        raise MeasureError(src, mid, amount,
                           "the catalogue has no national potential for this measure; give an "
                           "area (area_ha / share_of_eligible) instead")
    sy = _year(e.get("start_year", start), src, mid, "start_year")
    if sy > end:
        raise MeasureError(src, mid, "start_year", f"{sy} is after the scenario's end ({end})")
    ramp = k.number("ramp_years", e.get("ramp_years", m.ramp_years))
    sat = k.number("saturation_years", e["saturation_years"], allow_none=True) \
        if "saturation_years" in e else m.saturation_years
    if sat is not None and sat < ramp:
        raise MeasureError(src, mid, "saturation_years",
                           f"{sat:g} is before the end of the ramp ({ramp:g} years); saturation "
                           "counts from the start year")
    decline = k.number("decline_years", e.get("decline_years", m.decline_years))
    allow = e.get("allow_double_count", False)
    if not isinstance(allow, bool):
        raise MeasureError(src, mid, "allow_double_count", f"must be true or false, got {allow!r}")
    if baseline.variable and baseline.variable in m.counted_in and not allow:
        raise MeasureError(src, mid, "id",
                           f"the baseline variable {baseline.variable!r} already holds this sink "
                           f"(counted_in {list(m.counted_in)}); set allow_double_count: true to "
                           "add it anyway")
    label = e.get("label", "")
    return ScenarioMeasure(id=mid, measure=m, start_year=sy, ramp_years=ramp,
                           saturation_years=sat, decline_years=decline,
                           allow_double_count=allow, label=str(label), **{amount: val})


def load_scenario(path_or_dict, measures=None) -> Scenario:
    """A checked :class:`Scenario` from a YAML file or a dict (see the module docstring).
    ``measures``: the catalogue the ids refer to (list or dict of :class:`Measure`; default the
    package catalogue with its pathways). Raises :class:`MeasureError`."""
    if isinstance(path_or_dict, dict):
        doc, src = path_or_dict, "scenario"
    else:
        src = str(path_or_dict)
        try:
            text = Path(path_or_dict).read_text(encoding="utf-8-sig")
        except OSError as e:
            raise MeasureError(src, None, None, f"cannot be read: {e}") from e
        doc = _yaml(text, src)
        if not isinstance(doc, dict):
            raise MeasureError(src, None, None, "a scenario is a mapping")
    catalogue = measures_by_id(load_measures(include_pathways=True) if measures is None
                               else measures)
    for f in doc:
        if f not in _SCENARIO_FIELDS:
            raise MeasureError(src, None, f, f"unknown field (allowed: {sorted(_SCENARIO_FIELDS)})")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MeasureError(src, None, "name", "missing")
    if "years" not in doc:
        raise MeasureError(src, None, "years", "missing (e.g. 2020-2060)")
    start, end = _year_pair(doc["years"], src, "years")
    tgt = doc.get("target_gt_co2", list(SEED_TARGET_GT_CO2))
    if isinstance(tgt, (int, float)) and not isinstance(tgt, bool):
        tgt = [tgt, tgt]
    if not isinstance(tgt, (list, tuple)) or len(tgt) != 2:
        raise MeasureError(src, None, "target_gt_co2", f"needs [lower, upper], got {tgt!r}")
    k = _Checker({"id": None}, {}, src)
    tlo, thi = (k.number("target_gt_co2", t) for t in tgt)
    if tlo > thi:
        raise MeasureError(src, None, "target_gt_co2", f"lower {tlo:g} > upper {thi:g}")
    ty = _year_pair(doc.get("target_years", list(SEED_TARGET_YEARS)), src, "target_years")
    if ty[0] < start or ty[1] > end:
        raise MeasureError(src, None, "target_years",
                           f"{ty[0]}–{ty[1]} is not within the scenario's years {start}–{end}")
    if "baseline" not in doc:
        raise MeasureError(src, None, "baseline", "missing (e.g. {gt_co2: 1.1})")
    baseline = _baseline(doc["baseline"], src)
    items = doc.get("measures") or []
    if not isinstance(items, list):
        raise MeasureError(src, None, "measures", "must be a list")
    sms = tuple(_scenario_measure(e, i, src, catalogue, start, end, baseline)
                for i, e in enumerate(items))
    _check_shares(sms, src)
    desc = doc.get("description", "")
    return Scenario(name=name.strip(), start_year=start, end_year=end, target_gt_co2=(tlo, thi),
                    target_years=ty, baseline=baseline, measures=sms, description=str(desc or ""),
                    source=src)


def _check_shares(sms, src):
    sums: dict[tuple[str, str], float] = {}
    for sm in sms:
        if sm.share_of_eligible is not None:
            key = ("share_of_eligible", sm.id)
            sums[key] = sums.get(key, 0.0) + sm.share_of_eligible
        if sm.potential_share is not None:
            g = sm.measure.potential_group
            key = ("potential_share", f"group:{g}" if g else sm.id)
            sums[key] = sums.get(key, 0.0) + sm.potential_share
    for (fld, who), total in sums.items():
        if total > 1 + _SHARE_ATOL:
            members = [sm.id for sm in sms if getattr(sm, fld) is not None and
                       (sm.id == who or f"group:{sm.measure.potential_group}" == who)]
            what = (f"potential group {who[6:]!r} (one potential shared by "
                    f"{sorted(set(members))})" if who.startswith("group:") else "this measure")
            raise MeasureError(src, members[-1], fld,
                               f"the {fld} of {what} sums to {total:g} > 1")


def projection_inputs(scenario: Scenario, eligible_ha: dict | None = None) -> dict:
    """The arrays :func:`carbonsink.kernels.scenarios.project` takes, one row per scenario
    measure: ``values`` (m, 3) (rates t C ha⁻¹ a⁻¹ or potentials Gt CO₂ a⁻¹), ``amounts`` (m,)
    (ha, or the share of the potential), ``kind`` (m,) ('rate' | 'potential'), ``starts``,
    ``ramps``, ``saturations`` (inf = none), ``declines`` and ``ids``. ``eligible_ha``: {id: ha}
    from the spatial part; required for ``share_of_eligible``, and used to :func:`check_area`
    the area requests."""
    eligible_ha = eligible_ha or {}
    by_id: dict[str, float] = {}
    for sm in scenario.measures:
        if sm.area_ha is not None:
            by_id[sm.id] = by_id.get(sm.id, 0.0) + sm.area_ha
    for mid, total in by_id.items():
        if mid in eligible_ha:
            check_area(mid, total, eligible_ha[mid], source=scenario.source)
    values, amounts, kinds = [], [], []
    for sm in scenario.measures:
        if sm.potential_share is not None:
            values.append(sm.measure.potential_gt_co2.as_array())
            amounts.append(sm.potential_share)
            kinds.append("potential")
            continue
        values.append(sm.measure.rate_t_c_ha.as_array())
        kinds.append("rate")
        if sm.area_ha is not None:
            amounts.append(sm.area_ha)
        else:
            if sm.id not in eligible_ha:
                raise MeasureError(scenario.source, sm.id, "share_of_eligible",
                                   "needs the eligible area from the spatial part (eligible_ha)")
            check_area(sm.id, 0.0, eligible_ha[sm.id], source=scenario.source)
            amounts.append(sm.share_of_eligible * float(eligible_ha[sm.id]))
    m = len(scenario.measures)
    return {
        "ids": [sm.id for sm in scenario.measures],
        "values": np.array(values, dtype="f8").reshape(m, 3),
        "amounts": np.array(amounts, dtype="f8"),
        "kind": np.array(kinds, dtype=object),
        "starts": np.array([sm.start_year for sm in scenario.measures], dtype="f8"),
        "ramps": np.array([sm.ramp_years for sm in scenario.measures], dtype="f8"),
        "saturations": np.array([np.inf if sm.saturation_years is None else sm.saturation_years
                                 for sm in scenario.measures], dtype="f8"),
        "declines": np.array([sm.decline_years for sm in scenario.measures], dtype="f8"),
    }
