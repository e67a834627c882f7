"""The ingest manifest: where each canonical input comes from and what its values mean.

A manifest is a YAML file (format 1) validated by the pydantic models below before anything is
read. It names, per canonical variable of the input schema (README "Input schema"):

``source``
    a path or URL (``s3://...`` too) with ``{year}`` / ``{month}`` placeholders (``{month:02d}``
    style format specs allowed) and/or glob wildcards. Relative paths are relative to the manifest.
    Each placeholder expansion must match exactly one file (none: a missing year; two: a duplicate).
    Without placeholders, a NetCDF source (one file or a glob) is indexed by its time coordinate.
``format``
    ``geotiff`` | ``netcdf`` | ``vector`` (polygons, for ``carbonate_fraction``) — inferred from the
    file extension when omitted.
``variable`` / ``band`` / ``layer``
    the NetCDF variable, the GeoTIFF band (1-based; a yearly GeoTIFF of monthly data holds 12 bands,
    January first), the vector layer.
``units``
    the units **as the source declares them** after scale/offset (UDUNITS spelling of the unit table,
    ``carbonsink.units``): ``K``, ``m``, ``kg m-2 s-1``, ``J m-2``, ``W m-2``, ``kg C m-2 yr-1``, ...
    Optional when the file carries a ``units`` attribute; if both are given they must agree.
``scale_factor`` / ``add_offset`` / ``nodata`` / ``valid_range``
    decoding of the stored numbers: ``value = raw * scale_factor + add_offset``; raw values equal to
    any ``nodata`` value or outside the raw ``valid_range`` are missing. Values the file declares
    itself (GeoTIFF nodata/scale/offset tags, NetCDF ``_FillValue``/``missing_value``/
    ``scale_factor``/``add_offset``/``valid_range``) are honoured too; a scale or offset declared
    differently by the file and the manifest is an error.
``crs``
    only for files that lack one (any pyproj string, e.g. the MODIS sinusoidal proj string). A file
    with a different CRS than the manifest's is an error. NetCDF files with 1-D latitude/longitude
    coordinates are geographic (EPSG:4326) by the CF conventions.
``temporal``
    what one stored value means in time: ``static``, ``annual_total`` (an amount per year),
    ``annual_mean`` (a mean rate over the year, e.g. kg m-2 s-1), ``monthly_mean`` (a monthly mean
    state such as temperature, or a monthly mean rate such as kg m-2 s-1 or W m-2),
    ``monthly_accumulation`` (an amount per month, e.g. CHIRPS mm), ``daily_mean_flux`` (the mean
    daily amount of the month, e.g. ERA5-Land monthly means of accumulated ``tp`` in m or ``ssrd`` in
    J m-2 — multiplied by the days of the month), ``annual`` (a state per year: the land-use map,
    the population or GDP density of that year — converted as is, never multiplied by a duration).
    Monthly sources of annual variables (``rsds``, ``aet``, ``npp``) are summed over the 12 months of
    each year. A state whose canonical unit is itself a rate (wind, m s-1) converts directly (km h-1,
    knots). See :func:`unit_plan`.
``years_available``
    for ``annual`` maps published every few years (CNLUCC land use: 2000, 2005, 2010, 2015, 2020):
    the years that have their own file (``{year}`` is expanded for them only). Every other year
    takes the map of the latest earlier available year (years before the first one take the first
    one); the published variable's ``source_year`` attribute lists the map year of each year, and the
    version record the years each file serves. Without it a missing year is an error.
``resampling``
    ``auto`` (default: ``mode`` for classes — ``basin``, ``lulc`` — and masks; otherwise ``average``
    — area averaging — when the source is as fine or finer than the grid, ``bilinear`` when it is
    coarser), ``average``, ``bilinear``, ``cubic``, ``nearest``, ``mode`` (classes and masks: the
    class covering most of the cell, codes kept exactly; class variables allow only ``mode`` and
    ``nearest``). See :mod:`carbonsink.io.regrid`.
``fill_on_land``
    optional value for land cells the source leaves empty (e.g. MODIS NPP over barren land → 0), or
    ``nearest``: the value of the nearest cell with data within 8 cells (coastlines and islands a
    reanalysis land-sea mask leaves out). The count of filled cells is recorded in the version
    record. Without it, a hole on land is an error.
``plausibility`` / ``plausible_range``
    the land-area mean of ``pr``, ``tas``, ``npp``, ``aet``, ``rsds`` and ``soc`` must lie in a band
    real data have anywhere in China (:mod:`carbonsink.io.plausibility`: catches unit slips that stay
    inside the physical range, e.g. SOC in t C ha-1 declared as kg m-2). For a study area that really
    lies outside it, ``plausible_range: [lo, hi]`` replaces the band (in the band's units: mm per
    year for ``pr``, degC, g m-2 yr-1, mm yr-1, MJ m-2 yr-1, kg m-2) or ``plausibility: skip`` skips
    the check; either is recorded in the published variable's ``plausibility_check`` attribute.
``attribute`` / ``carbonate_classes`` / ``supersample``
    for ``carbonate_fraction`` from lithology polygons (or a class raster): the class column (raster:
    the band values), the classes that are carbonate rock, and the sub-cells per cell side used to
    rasterise the polygons (default 10: 100 sub-cells per cell).

``land_mask`` is optional (default: China's land from cnmaps, as the synthetic demo uses).
``basin`` is optional: river basins for the karst sink's ionic-strength model — a raster of integer
basin ids (``resampling`` mode, the default, or nearest; 0 or nodata = no basin) or polygons with
``attribute`` naming the integer id column (each cell takes the basin covering most of its
``supersample`` × ``supersample`` sub-cells). Land cells in no basin get 0. With ``basin`` and
``tables.river_chemistry``, ``carbonsink run`` trains the random forest on them; without, the karst
sink iterates I = 3[Ca] per pixel.
``tables.river_chemistry`` names the river ion-chemistry CSV (columns mapped to ``basin_id``, ``year``
and the seven major ions; ``units`` mmol L-1, µmol L-1, mg L-1 or meq L-1), attached to the published
inputs as ``river_chemistry.csv``.

The carbon-sequestration services (SCIENCE.md §7) need six more variables, all or none of them (a
manifest naming some is refused, naming the missing ones); none has a plausibility band:

* ``lulc`` land-use class codes (CNLUCC: 11 … 67, first digit = primary class), ``annual`` with
  ``years_available``; regridded by ``mode`` (codes kept exactly); ``nodata`` (e.g. 0, 255) is
  honoured, and a land cell without a class is a hole (an error unless ``fill_on_land``);
* ``population`` and ``gdp``: densities (persons km-2, persons ha-1; CNY km-2, 1e4 CNY km-2),
  ``annual``, area-averaged (``auto``) so that density × cell area keeps the totals — counts per pixel
  (LandScan, WorldPop ``ppp``) must be turned into densities first;
* ``elevation`` (m, ``static``);
* ``uas`` / ``vas``: ``monthly_mean`` 10 m wind components (m s-1, km h-1, knots; ERA5-Land
  ``u10``/``v10`` monthly means). The services take the prevailing wind sector from these monthly
  means; daily or hourly wind is not read.

Their tables (:mod:`carbonsink.io.services_tables`) are optional, each ``{source, columns: {canonical:
column in the file}, sep}``; each is converted to canonical columns and units, checked (missing
columns, negative or non-numeric numbers, unknown provinces, duplicated rows, missing years: an error
naming the table and the file before anything is written) and attached to the published inputs:

``tables.province_statistics`` → ``province_statistics.csv``
    ``year, province, population, pigs, large_livestock, wood, cement`` and ``energy_<fuel>`` for each
    fuel of the emission-factor table (the manifest's, else the package default: coal, oil,
    natural_gas, other); a row per province and year of ``years``; provinces in English or Chinese.
    ``units: {column: units}`` gives yearbook units — ``persons`` / ``head`` / ``t`` / ``tce`` with an
    optional ``10^4``, ``1e4``, ``10^8`` or ``1e8`` prefix (``energy`` applies to every ``energy_<fuel>``
    column) — multiplied out to persons, head, t and tce.
``tables.emission_factors`` → ``emission_factors.csv``
    ``fuel, factor`` (t C tce-1; an optional ``units`` column must say so) and ``source``.
``tables.lulc_classes`` → ``lulc_classes.csv``
    ``code, name, primary`` of each land-use code (default: the CNLUCC classes).
``tables.carbon_pools`` → ``carbon_pools.csv``
    InVEST's ``lucode, c_above, c_below, c_soil, c_dead`` (other columns kept); ``units`` of the pools
    (default t C ha-1; kg C m-2, g C m-2 converted).

Without them the products use the package defaults for classes, pools and factors; the province
statistics have no default.

Top level: ``name`` (published as ``inputs/<name>``, default ``observed``), ``grid`` (a resolution
dividing 1° or a preset), ``domain`` (the study area, :mod:`carbonsink.domains`: ``china`` by
default, a province, ``three-river-headwaters``, ``bbox:W,S,E,N`` or a polygon file relative to the
manifest; only the domain's box is read and its clip is the land mask),
``years`` (``2001-2020``), ``checksum`` (``sha256`` of every source file, default, or ``stat`` = size +
mtime for very large local archives; object stores use their ETag), ``chunk_mb``, ``title`` and
``storage_options`` (non-secret fsspec options for ``s3://`` sources; keys come from the environment).
The example for the real layouts (MODIS MOD17A3HGF, ERA5-Land, CMFD, CHIRPS, MOD16A3, SOC, GLiM, river
chemistry, and — commented — the services inputs: CNLUCC, WorldPop, the RESDC GDP grid, SRTM, ERA5-Land
wind, yearbook statistics) is ``catalogs/ingest-china-example.yaml``.

Hashes: :meth:`Manifest.sha256` is the hash of the whole validated manifest (recorded as provenance);
:meth:`Manifest.variable_hash` hashes what determines a variable's values *except* the source location
and the years, so moving a data directory or adding a year does not force earlier years to be redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import string
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import units as u
from ..grid import get_grid
from .services_tables import POOL_COLUMNS, STAT_COLUMNS, STAT_UNITS
from .validate import OPTIONAL, SCHEMA, SERVICES, InputError

FORMAT_VERSION = 1

TEMPORAL = ("static", "annual_total", "annual_mean", "annual", "monthly_mean",
            "monthly_accumulation", "daily_mean_flux")
MONTHLY = ("monthly_mean", "monthly_accumulation", "daily_mean_flux")
ANNUAL = ("annual_total", "annual_mean")
RESAMPLING = ("auto", "average", "bilinear", "cubic", "nearest", "mode")
FORMATS = ("geotiff", "netcdf", "vector")
CHECKSUMS = ("sha256", "stat")

_EXTENSIONS = {".tif": "geotiff", ".tiff": "geotiff", ".gtiff": "geotiff", ".nc": "netcdf",
               ".nc4": "netcdf", ".cdf": "netcdf", ".netcdf": "netcdf", ".gpkg": "vector",
               ".shp": "vector", ".geojson": "vector", ".json": "vector", ".fgb": "vector"}

# Canonical variable → the temporal meanings its sources may have. State variables (tas, soc, ...)
# cannot be accumulated; amounts per month (pr) cannot come from annual data (that is the explicit
# annual_climate option of the products, never a silent ingest step — SCIENCE.md §1).
ALLOWED_TEMPORAL = {
    "npp": ANNUAL + MONTHLY, "rsds": ANNUAL + MONTHLY, "aet": ANNUAL + MONTHLY,
    "tas": ("monthly_mean",), "pr": MONTHLY,
    "soc": ("static",), "carbonate_fraction": ("static",), "land_mask": ("static",),
    "basin": ("static",),
    # the carbon-sequestration services: a state per year (a land-use map, a density of that
    # year: never multiplied by any duration), a static elevation, monthly mean wind components
    "lulc": ("annual",), "population": ("annual",), "gdp": ("annual",),
    "elevation": ("static",), "uas": ("monthly_mean",), "vas": ("monthly_mean",),
}
DEFAULT_TEMPORAL = {"npp": "annual_total", "rsds": "annual_total", "aet": "annual_total",
                    "tas": "monthly_mean", "pr": "monthly_accumulation", "soc": "static",
                    "carbonate_fraction": "static", "land_mask": "static", "basin": "static",
                    "lulc": "annual", "population": "annual", "gdp": "annual",
                    "elevation": "static", "uas": "monthly_mean", "vas": "monthly_mean"}

# variables with a plausibility check of their land mean (carbonsink.io.plausibility.BANDS)
_PLAUSIBILITY_CHECKED = ("pr", "tas", "npp", "aet", "rsds", "soc")

ION_TABLE_COLUMNS = ("basin_id", "year", "ca", "mg", "na", "k", "hco3", "so4", "cl")

# the services tables (carbonsink.io.services_tables): canonical columns a manifest may map
POOL_TABLE_COLUMNS = ("lucode",) + POOL_COLUMNS
CLASS_TABLE_COLUMNS = ("code", "name", "primary")
FACTOR_TABLE_COLUMNS = ("fuel", "factor", "units", "source")
STAT_TABLE_COLUMNS = ("year", "province") + STAT_COLUMNS   # + energy_<fuel> per fuel
POOL_UNITS = "t C ha-1"
# yearbook multipliers of the province statistics: "10^4 persons" = 10 000 persons
STAT_MULTIPLIERS = {"": 1.0, "10^4": 1e4, "1e4": 1e4, "10^8": 1e8, "1e8": 1e8}
_STAT_UNIT = re.compile(r"^(?:(10\^4|1e4|10\^8|1e8)\s*)?([a-z]+)$")


class ManifestError(InputError):
    """A manifest that cannot be used: names the variable (if any), the manifest and the problem."""


# --- the models -------------------------------------------------------------------------------
class VariableSource(BaseModel):
    """Where one canonical variable comes from and how to read its numbers."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="path/URL with {year}/{month} placeholders and/or wildcards")
    format: Literal[FORMATS] | None = None  # type: ignore[valid-type]
    variable: str | None = Field(None, description="NetCDF variable name")
    band: int | None = Field(None, ge=1, description="GeoTIFF band, 1-based")
    layer: str | None = Field(None, description="vector layer")
    units: str | None = Field(None, description="units as the source declares them")
    scale_factor: float | None = None
    add_offset: float | None = None
    nodata: list[float] = Field(default_factory=list)
    valid_range: tuple[float, float] | None = None
    crs: str | None = None
    temporal: Literal[TEMPORAL] | None = None  # type: ignore[valid-type]
    resampling: Literal[RESAMPLING] = "auto"  # type: ignore[valid-type]
    fill_on_land: float | Literal["nearest"] | None = None
    attribute: str | None = Field(None, description="class column of lithology polygons")
    carbonate_classes: list[str | int | float] | None = None
    supersample: int = Field(10, ge=1, le=50)
    plausibility: Literal["check", "skip"] = "check"
    plausible_range: tuple[float, float] | None = None
    years_available: list[int] | None = Field(
        None, description="years with their own map (CNLUCC: every 5 years); a year without one "
                          "takes the latest earlier one (the first one before it)")

    @field_validator("years_available")
    @classmethod
    def _available(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("years_available is empty")
        if len(set(v)) != len(v):
            raise ValueError(f"years_available {v} lists a year twice")
        if not all(1800 <= y <= 2200 for y in v):
            raise ValueError(f"years_available {v} are not calendar years")
        return sorted(v)

    @field_validator("nodata", mode="before")
    @classmethod
    def _listify(cls, v):
        if v is None:
            return []
        return v if isinstance(v, (list, tuple)) else [v]

    @field_validator("crs")
    @classmethod
    def _crs(cls, v):
        if v is None:
            return v
        from pyproj import CRS
        from pyproj.exceptions import CRSError
        try:
            CRS.from_user_input(v)
        except CRSError as e:
            raise ValueError(f"unknown CRS {v!r}: {e}") from None
        return v

    @field_validator("valid_range", "plausible_range")
    @classmethod
    def _range(cls, v, info):
        if v is not None and not v[0] <= v[1]:
            raise ValueError(f"{info.field_name} {v} runs backwards")
        return v

    @model_validator(mode="after")
    def _format(self):
        if self.format is None:
            ext = os.path.splitext(self.source.split("?")[0])[1].lower()
            fmt = _EXTENSIONS.get(ext)
            if fmt is None:
                raise ValueError(f"cannot tell the format of {self.source!r} from its extension "
                                 f"{ext!r}: set format to one of {FORMATS}")
            self.format = fmt
        if self.format == "netcdf" and not self.variable:
            raise ValueError("a NetCDF source needs `variable` (the name of the data variable)")
        if self.format != "netcdf" and self.variable:
            raise ValueError(f"`variable` is for NetCDF sources; this one is {self.format}")
        if self.format == "vector" and self.band is not None:
            raise ValueError("`band` is for raster sources")
        _check_template(self.source)
        return self


class TableSource(BaseModel):
    """A river ion-chemistry CSV table (SCIENCE.md §3 training data)."""

    model_config = ConfigDict(extra="forbid")

    source: str
    format: Literal["csv"] = "csv"
    columns: dict[str, str] = Field(default_factory=dict,
                                    description="canonical column → column in the file")
    units: str = "mmol L-1"
    sep: str = ","

    @field_validator("columns")
    @classmethod
    def _columns(cls, v):
        bad = sorted(set(v) - set(ION_TABLE_COLUMNS))
        if bad:
            raise ValueError(f"unknown canonical columns {bad}; use {list(ION_TABLE_COLUMNS)}")
        return v

    @field_validator("units")
    @classmethod
    def _units(cls, v):
        try:
            canon = u.canonical(v)
        except u.UnitError as e:
            raise ValueError(str(e)) from None
        if canon not in ("mmol L-1", "mg L-1", "meq L-1"):
            raise ValueError(f"ion concentrations must be molar, mass or charge concentrations "
                             f"(mmol L-1, mg L-1, meq L-1), not {v!r}")
        return v


class ServicesTableSource(BaseModel):
    """A CSV table of the carbon-sequestration services (:mod:`carbonsink.io.services_tables`)."""

    model_config = ConfigDict(extra="forbid")
    CANONICAL: ClassVar[tuple[str, ...]] = ()

    source: str
    format: Literal["csv"] = "csv"
    columns: dict[str, str] = Field(default_factory=dict,
                                    description="canonical column → column in the file")
    sep: str = ","

    @field_validator("columns")
    @classmethod
    def _columns(cls, v):
        bad = sorted(c for c in v if not cls._canonical_column(c))
        if bad:
            raise ValueError(f"unknown canonical columns {bad}; use {list(cls.CANONICAL)}")
        sources = list(v.values())
        twice = sorted({c for c in sources if sources.count(c) > 1})
        if twice:
            raise ValueError(f"file columns {twice} are mapped to two canonical columns")
        return v

    @classmethod
    def _canonical_column(cls, c: str) -> bool:
        return c in cls.CANONICAL


class PoolTableSource(ServicesTableSource):
    """InVEST's carbon pool table: ``lucode`` and the four pools (other columns are kept)."""

    CANONICAL: ClassVar[tuple[str, ...]] = POOL_TABLE_COLUMNS
    units: str = Field(POOL_UNITS, description="carbon density of the pools (t C ha-1, kg C m-2,"
                                               " g C m-2, Mg C ha-1)")

    @field_validator("units")
    @classmethod
    def _units(cls, v):
        try:
            u.conversion(v, POOL_UNITS)
        except u.UnitError as e:
            raise ValueError(f"pool densities must be a carbon mass per area convertible to "
                             f"{POOL_UNITS!r}: {e}") from None
        return v


class ClassTableSource(ServicesTableSource):
    """The land-use class table: ``code, name, primary``."""

    CANONICAL: ClassVar[tuple[str, ...]] = CLASS_TABLE_COLUMNS


class FactorTableSource(ServicesTableSource):
    """The emission-factor table: ``fuel, factor, units, source`` (t C tce-1)."""

    CANONICAL: ClassVar[tuple[str, ...]] = FACTOR_TABLE_COLUMNS


class StatisticsTableSource(ServicesTableSource):
    """Province statistics (yearbooks): ``year, province``, the statistics and ``energy_<fuel>``."""

    CANONICAL: ClassVar[tuple[str, ...]] = STAT_TABLE_COLUMNS + ("energy_<fuel>",)
    units: dict[str, str] = Field(
        default_factory=dict, description="column (or `energy` for every energy_<fuel>) → "
                                          "units as the yearbook gives them, e.g. '10^4 persons'")

    @classmethod
    def _canonical_column(cls, c: str) -> bool:
        return c in STAT_TABLE_COLUMNS or bool(re.fullmatch(r"energy_[a-z0-9_]+", c))

    @field_validator("units")
    @classmethod
    def _units(cls, v):
        for column, units in v.items():
            statistic_multiplier(column, units)     # raises ValueError naming the problem
        return v

    def multiplier(self, column: str) -> float:
        """The factor turning ``column``'s numbers into canonical units (persons, head, t, tce)."""
        units = self.units.get(column)
        if units is None and column.startswith("energy_"):
            units = self.units.get("energy")
        return 1.0 if units is None else statistic_multiplier(column, units)


def statistic_multiplier(column: str, units: str) -> float:
    """10 000 for ('population', '10^4 persons'); ValueError for units that are not the column's
    canonical unit (persons, head, t, tce) with an optional 10^4 / 1e4 / 10^8 / 1e8 prefix."""
    base = "energy" if column.startswith("energy") else column
    canon = STAT_UNITS.get(base)
    if canon is None:
        raise ValueError(f"units for unknown column {column!r}; the statistics are "
                         f"{list(STAT_UNITS)} (energy: every energy_<fuel> column)")
    hit = _STAT_UNIT.match(re.sub(r"\s+", " ", str(units).strip().lower()))
    words = {"persons": "persons", "person": "persons", "people": "persons", "head": "head",
             "heads": "head", "t": "t", "tonnes": "t", "tons": "t", "tce": "tce"}
    if not hit or words.get(hit.group(2)) != canon:
        raise ValueError(f"units {units!r} of {column!r}: use {canon!r}, optionally with a "
                         f"yearbook multiplier ('10^4 {canon}', '1e4 {canon}', '10^8 {canon}')")
    return STAT_MULTIPLIERS[hit.group(1) or ""]


# the tables a manifest may name, and their models
TABLE_MODELS: dict[str, type[BaseModel]] = {
    "river_chemistry": TableSource, "province_statistics": StatisticsTableSource,
    "emission_factors": FactorTableSource, "lulc_classes": ClassTableSource,
    "carbon_pools": PoolTableSource}
SERVICES_TABLES = ("emission_factors", "lulc_classes", "carbon_pools", "province_statistics")


class Manifest(BaseModel):
    """A validated ingest manifest (format 1)."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field("observed", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str | None = None
    grid: str = "0.1"
    # the study area (carbonsink.domains); a polygon file is relative to the manifest
    domain: str = "china"
    years: tuple[int, int]
    checksum: Literal[CHECKSUMS] = "sha256"  # type: ignore[valid-type]
    chunk_mb: float = Field(32.0, gt=0, le=512)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, VariableSource]
    # name → TableSource / ServicesTableSource (TABLE_MODELS), validated by _tables
    tables: dict[str, Any] = Field(default_factory=dict)
    # where the manifest was read from (not part of the hashes)
    path: str | None = Field(None, exclude=True)

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, v):
        v = str(v)
        get_grid(v)
        return v

    @field_validator("years", mode="before")
    @classmethod
    def _years(cls, v):
        from ..config import parse_years
        if isinstance(v, (int, np.integer, str)):
            return parse_years(str(v))
        return v

    @field_validator("tables", mode="before")
    @classmethod
    def _tables(cls, v):
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError(f"tables must be a mapping of {list(TABLE_MODELS)}")  # noqa: TRY004
        out = {}
        for name, spec in v.items():
            model = TABLE_MODELS.get(name)
            if model is None:
                raise ValueError(f"unknown table {name!r}; the tables are {list(TABLE_MODELS)}")
            if isinstance(spec, model):
                out[name] = spec
                continue
            try:
                out[name] = model.model_validate(spec)
            except ValidationError as e:
                problems = []
                for err in e.errors():
                    loc = ".".join([name] + [str(x) for x in err["loc"]])
                    problems.append(f"{loc}: " + err["msg"].removeprefix("Value error, "))
                raise ValueError("; ".join(problems)) from None
        return out

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, v):
        from ..config import reject_secret_options
        return reject_secret_options(v)

    @model_validator(mode="after")
    def _check(self):
        if self.years[1] < self.years[0]:
            raise ValueError(f"years {self.years} run backwards")
        if not 1800 <= self.years[0] <= 2200:
            raise ValueError(f"years {self.years} are not calendar years")
        unknown = sorted(set(self.variables) - set(SCHEMA))
        if unknown:
            raise ValueError(f"unknown canonical variables {unknown}; the schema has "
                             f"{sorted(SCHEMA)}")
        missing = [v for v in SCHEMA if v not in self.variables and v != "land_mask"
                   and v not in OPTIONAL]
        if missing:
            raise ValueError(f"no source for canonical variables {missing} (every schema variable "
                             f"but land_mask and the optional {list(OPTIONAL)} needs one)")
        services = [v for v in SERVICES if v in self.variables]
        if services and len(services) < len(SERVICES):
            lacking = [v for v in SERVICES if v not in self.variables]
            raise ValueError(f"variables: the carbon-sequestration services need all of "
                             f"{list(SERVICES)}; the manifest names {services} but not "
                             f"{lacking} (name all six, or none)")
        for var, spec in self.variables.items():
            if spec.temporal is None:
                spec.temporal = DEFAULT_TEMPORAL[var]
            if spec.temporal not in ALLOWED_TEMPORAL[var]:
                raise ValueError(f"variables.{var}: temporal {spec.temporal!r} is not possible for "
                                 f"{var} ({SCHEMA[var].units}); use one of {ALLOWED_TEMPORAL[var]}")
            if spec.format == "vector" and var not in ("carbonate_fraction", "basin"):
                raise ValueError(f"variables.{var}: polygons are only supported for "
                                 "carbonate_fraction and basin")
            if var == "basin" and spec.format == "vector" and not spec.attribute:
                raise ValueError("variables.basin: polygons need `attribute` (the column "
                                 "holding each basin's integer id)")
            if SCHEMA[var].kind == "class" and spec.resampling not in ("auto", "mode", "nearest"):
                what = "basin ids" if var == "basin" else "land-use codes"
                raise ValueError(f"variables.{var}: {what} are classes; resampling must be mode "
                                 f"or nearest (codes kept exactly), not {spec.resampling!r}")
            if spec.years_available is not None and spec.temporal != "annual":
                raise ValueError(f"variables.{var}: years_available is for maps of a state per "
                                 f"year (temporal 'annual': lulc, population, gdp), not "
                                 f"{spec.temporal!r}")
            if spec.plausible_range is not None and var not in _PLAUSIBILITY_CHECKED:
                raise ValueError(f"variables.{var}: plausible_range is only for "
                                 f"{list(_PLAUSIBILITY_CHECKED)} (no plausibility check of {var})")
            if spec.carbonate_classes is not None and var != "carbonate_fraction":
                raise ValueError(f"variables.{var}: carbonate_classes is only for "
                                 "carbonate_fraction")
            if var == "carbonate_fraction" and spec.format == "vector":
                if not spec.attribute or not spec.carbonate_classes:
                    raise ValueError("variables.carbonate_fraction: polygons need `attribute` "
                                     "(the lithology class column) and `carbonate_classes`")
            fields = _template_fields(spec.source)
            if spec.temporal == "static" and fields:
                raise ValueError(f"variables.{var}: a static source cannot have {sorted(fields)} "
                                 "placeholders")
            if "month" in fields and spec.temporal not in MONTHLY:
                raise ValueError(f"variables.{var}: {{month}} in the path needs a monthly temporal "
                                 f"meaning, not {spec.temporal!r}")
            if "month" in fields and "year" not in fields:
                raise ValueError(f"variables.{var}: a {{month}} placeholder needs {{year}} too")
            if spec.format == "geotiff" and spec.temporal != "static" and "year" not in fields:
                raise ValueError(f"variables.{var}: a GeoTIFF time series needs {{year}} (and "
                                 "{month} for one file per month) in its path")
            if spec.units is not None and not spec.carbonate_classes:
                # a carbonate class raster/polygon layer has no units; everything else is checked
                # against the canonical units and the temporal meaning now, before any file is read
                try:
                    unit_plan(var, spec.units, spec.temporal)
                except u.UnitError as e:
                    raise ValueError(f"variables.{var}: {e}") from None
        return self

    # --- identity -------------------------------------------------------------------------------
    def canonical_dict(self) -> dict:
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        """Hash of the whole validated manifest (provenance)."""
        return _hash(self.canonical_dict())

    def variable_hash(self, var: str) -> str:
        """What determines ``var``'s values per year, except where the files are and which years:
        adding a year or moving the data keeps it; changing units, scale, nodata or resampling
        does not."""
        d = self.variables[var].model_dump(mode="json")
        d.pop("source")
        # which years have their own map is part of "which years": each year's source file is in
        # the content hash of the ingest, so adding a map year keeps the years it does not change
        d.pop("years_available", None)
        for key, default in (("plausibility", "check"), ("plausible_range", None)):
            if d.get(key) == default:   # keeps the hashes of manifests written before them
                d.pop(key)
        return _hash({"variable": var, "grid": self.grid, "spec": d,
                      "format_version": self.format_version})

    def resolve(self, path: str) -> str:
        """A source path made absolute relative to the manifest's directory (URLs unchanged)."""
        if "://" in path or os.path.isabs(path):
            return path
        base = os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()
        return os.path.normpath(os.path.join(base, os.path.expanduser(path)))

    @property
    def year_list(self) -> list[int]:
        return list(range(self.years[0], self.years[1] + 1))

    def source_years(self, var: str) -> dict[int, int]:
        """Year → the year whose map it takes: itself, or with ``years_available`` the latest
        available year not after it (the first available year for years before all of them)."""
        avail = self.variables[var].years_available
        if not avail:
            return {y: y for y in self.year_list}
        return {y: max([a for a in avail if a <= y], default=avail[0]) for y in self.year_list}


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _template_fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def _check_template(template: str):
    try:
        fields = _template_fields(template)
    except ValueError as e:
        raise ValueError(f"bad placeholder in {template!r}: {e}") from None
    bad = fields - {"year", "month"}
    if bad:
        raise ValueError(f"unknown placeholders {sorted(bad)} in {template!r}; only {{year}} and "
                         "{month} exist")


def load_manifest(manifest, *, path: str | None = None) -> Manifest:
    """A :class:`Manifest` from a YAML path, a YAML string with ``path`` for relative sources, a
    dict, or a Manifest. Raises :class:`ManifestError` with one line per problem."""
    if isinstance(manifest, Manifest):
        return manifest
    where = path
    if isinstance(manifest, (str, os.PathLike)) and not (isinstance(manifest, str)
                                                          and "\n" in manifest):
        where = os.fspath(manifest)
        try:
            with open(where) as f:
                text = f.read()
        except OSError as e:
            raise ManifestError(None, where, f"cannot read the manifest: {e}") from None
        data = _yaml(text, where)
        path = where
    elif isinstance(manifest, str):
        data = _yaml(manifest, where)
    else:
        data = manifest
    if not isinstance(data, dict):
        raise ManifestError(None, where, "must be a YAML mapping")
    try:
        m = Manifest(**data)
    except ValidationError as e:
        problems = []
        var = None
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            if len(err["loc"]) >= 2 and err["loc"][0] == "variables":
                var = var or str(err["loc"][1])
            msg = err["msg"].removeprefix("Value error, ")
            hit = re.match(r"variables\.(\w+):", msg)
            if hit and hit.group(1) in SCHEMA:
                var = var or hit.group(1)
            problems.append(f"{loc}: {msg}" if loc else msg)
        raise ManifestError(var, where, "invalid manifest: " + "; ".join(problems)) from None
    m.path = path
    try:
        m.domain = _resolve_domain(m.domain, path)
    except ValueError as e:
        raise ManifestError(None, where, f"invalid manifest: domain: {e}") from None
    return m


def _resolve_domain(spec: str, path: str | None) -> str:
    """The canonical key of the manifest's domain; a relative polygon file is taken relative to
    the manifest's folder."""
    from ..domains import _looks_like_file, get_domain

    body = spec[5:] if spec.lower().startswith("file:") else spec
    if (spec.lower().startswith("file:") or _looks_like_file(spec)) and path \
            and not os.path.isabs(os.path.expanduser(body)):
        body = os.path.join(os.path.dirname(os.path.abspath(path)), body)
        spec = body
    return get_domain(spec).key


def _yaml(text: str, where):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ManifestError(None, where, f"not valid YAML: {e}") from None


# --- units and time ---------------------------------------------------------------------------
# One stored value is either a state (temperature, a density, a fraction), an amount over a period
# (mm per month, J m-2 per day) or a rate (kg m-2 s-1, W m-2). The unit table (carbonsink.units)
# converts between spellings of the same quantity *per the same period*; the duration of each month
# and year (leap years counted, as the Rh kernels count them) is what turns a rate or a daily amount
# into the canonical amount per month or year, so it lives here, not in the static table.

_BASIS_SPELLINGS = {
    "s": ("s-1", "sec-1", "second-1"),
    "hour": ("h-1", "hr-1", "hour-1"),
    "day": ("d-1", "day-1"),
    "month": ("month-1", "mon-1"),
    "yr": ("yr-1", "a-1", "year-1", "y-1"),
}
_PERIOD_OF = {"monthly_mean": "month", "monthly_accumulation": "month",
              "daily_mean_flux": "month", "annual_total": "yr", "annual_mean": "yr",
              "annual": "yr", "static": None}
# the canonical water-depth targets: 1 kg m-2 of liquid water is 1 mm (density 1000 kg m-3)
_WATER_TARGETS = ("mm month-1", "mm yr-1")


def split_rate(units: str) -> tuple[str, str | None]:
    """('kg m-2', 's') for 'kg m-2 s-1' / 'kg m**-2 s**-1' / 'kg/m2/s'; ('J m-2', 's') for 'W m-2';
    (units, None) for a state or an amount ('K', 'mm', 'J m-2')."""
    key = u._key(units)
    key = re.sub(r"/\s*([a-z]+)2", r" \g<1>-2", key)          # "/m2" → " m-2"
    key = re.sub(r"/\s*([a-z]+)", r" \g<1>-1", key).strip()    # "/s" → " s-1"
    key = re.sub(r"\s+", " ", key)
    if key in ("w m-2", "w m2-1"):
        return "J m-2", "s"
    tokens = key.split(" ")
    if len(tokens) > 1:
        for basis, spellings in _BASIS_SPELLINGS.items():
            if tokens[-1] in spellings:
                return " ".join(tokens[:-1]), basis
    return key, None


@dataclass(frozen=True)
class UnitPlan:
    """How one variable's stored values become canonical values.

    ``value_per_step = value * duration(step, multiply_by)`` (a rate or daily amount → the amount of
    the month or year of that step; 1 when ``multiply_by`` is None), then monthly amounts are summed
    to years when ``aggregate_months``, then ``canonical = value * factor + offset`` (unit table).
    """

    variable: str
    declared: str
    temporal: str
    amount: str
    basis: str | None
    multiply_by: str | None      # s | hour | day | month | yr | None
    aggregate_months: bool
    factor: float
    offset: float
    canonical: str

    def describe(self) -> str:
        parts = [f"{self.declared!r} ({self.temporal})"]
        if self.multiply_by:
            parts.append(f"× {_DURATION_WORDS[self.multiply_by]}")
        if self.aggregate_months:
            parts.append("summed over the 12 months of each year")
        if self.factor != 1 or self.offset:
            parts.append(f"× {self.factor:g}" + (f" {self.offset:+g}" if self.offset else ""))
        return " ".join(parts) + f" → {self.canonical!r}"

    def step_factors(self, steps) -> np.ndarray:
        """Multiplier of each (year, month|None) step: the step's duration in ``multiply_by``."""
        return np.array([duration(y, m, self.multiply_by) for y, m in steps], dtype="f8")


_DURATION_WORDS = {"s": "seconds in the period", "hour": "hours in the period",
                   "day": "days in the month", "month": "months in the period",
                   "yr": "fraction of the year"}


def duration(year: int, month: int | None, basis: str | None) -> float:
    """Length of a month (or of the year when ``month`` is None) in ``basis`` units."""
    if basis is None:
        return 1.0
    from ..kernels.respiration import days_in_month
    dim = days_in_month([year])
    days = float(dim.sum() if month is None else dim[month - 1])
    days_year = float(dim.sum())
    return {"s": days * 86400.0, "hour": days * 24.0, "day": days,
            "month": 12.0 if month is None else 1.0,
            "yr": 1.0 if month is None else days / days_year}[basis]


def unit_plan(variable: str, units: str, temporal: str) -> UnitPlan:
    """The conversion of ``variable`` declared in ``units`` with meaning ``temporal``; raises
    :class:`carbonsink.units.UnitError` for units that cannot become the canonical ones or that
    contradict the temporal meaning."""
    spec = SCHEMA[variable]
    target = spec.units
    period = "month" if target.endswith("month-1") else "yr" if target.endswith("yr-1") else None
    src_period = _PERIOD_OF[temporal]
    if units is None:
        raise u.UnitError("no units declared (the manifest has none and neither has the file)")
    amount, basis = split_rate(units)
    if period is None:
        # a state (temperature, density, fraction, elevation), or a state that is itself a rate
        # per second (wind speed, m s-1): converted as is through the unit table (km h-1, knots →
        # m s-1), never multiplied by a duration. A rate is refused only for a state whose
        # canonical unit is not one (K s-1 for tas, kg m-2 s-1 for soc).
        if basis is not None and split_rate(target)[1] is None:
            raise u.UnitError(f"{units!r} is a rate per {basis}, but {variable} is a state in "
                              f"{target!r}")
        try:
            f, o = u.conversion(units, target)
        except u.UnitError as e:
            raise u.UnitError(f"units {units!r} cannot become {target!r}: "
                              f"{_what_units(units) or e}") from None
        return UnitPlan(variable, units, temporal, amount, None, None, False, f, o, target)
    if temporal == "annual":
        raise u.UnitError(f"'annual' is a state per year (land use, a density); {variable} is an "
                          f"amount per {period} ({target!r}): use 'annual_total' or "
                          "'annual_mean'")
    if src_period == "yr" and period == "month":
        raise u.UnitError(f"{variable} is monthly; an annual source cannot be spread over months "
                          "by ingest (use monthly data, or the products' annual_climate option)")
    if temporal in ("monthly_accumulation", "annual_total"):
        if basis not in (None, src_period):
            hint = "daily_mean_flux" if basis == "day" else (
                "monthly_mean" if src_period == "month" else "annual_mean")
            raise u.UnitError(f"{units!r} is a rate per {basis}, which contradicts {temporal!r} "
                              f"(an amount per {src_period}); did you mean {hint!r}?")
        multiply = None
    elif temporal == "daily_mean_flux":
        if basis in (None, "day"):
            multiply = "day"
        elif basis in ("s", "hour"):
            multiply = basis
        else:
            raise u.UnitError(f"{units!r} (per {basis}) is not a daily flux")
    else:  # monthly_mean / annual_mean of a rate
        if basis is None:
            raise u.UnitError(
                f"{temporal!r} of an amount {units!r} is ambiguous: declare "
                + ("'monthly_accumulation' (per month) or 'daily_mean_flux' (per day)"
                   if src_period == "month" else "'annual_total'")
                + f", or a rate such as '{amount} s-1'")
        multiply = basis
    per_target = f"{amount} {'month-1' if period == 'month' else 'yr-1'}"
    if target in _WATER_TARGETS and amount == "kg m-2":
        per_target = f"mm {'month-1' if period == 'month' else 'yr-1'}"
    try:
        f, o = u.conversion(per_target, target)
    except u.UnitError as e:
        raise u.UnitError(f"units {units!r} ({temporal}) cannot become {target!r}: "
                          f"{_what_units(units) or e}") from None
    return UnitPlan(variable, units, temporal, amount, basis, multiply,
                    src_period == "month" and period == "yr", f, o, target)


def _what_units(units: str) -> str | None:
    """'they are a quantity in degC' when the unit table knows ``units`` as another quantity."""
    try:
        return f"{units!r} is a quantity in {u.canonical(units)!r}, not the one asked for"
    except u.UnitError:
        return None
