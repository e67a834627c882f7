"""One validated run configuration, from defaults ← YAML ← environment ← explicit overrides.

Secrets (object-store keys) come only from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``); they are held as ``SecretStr`` and leave this module
only through :meth:`RunConfig.resolved_storage_options`, which hands them to fsspec. They never appear
in repr, logs, ``config_hash``, product attrs or catalogs. A YAML (or ``defaults``/overrides) that
carries anything secret-shaped (:func:`secret_paths`), at any level, is rejected.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator,
                      model_validator)

from .grid import get_grid
from .kernels.respiration import DEFAULT_RH_MODEL, RH_MODELS

# Secrets are recognised by shape, not by a list of known names (which missed e.g.
# s3_additional_kwargs.SSECustomerKey): a key is secret-shaped when its name, lowercased and without
# "_", "-" and ".", contains one of these fragments ("key" alone is a secret: s3fs's access key id).
SECRET_NAME_PARTS = ("key", "secret", "token", "password", "passwd", "credential", "signature",
                     "auth", "private", "cert")
# server-side-encryption options (SSECustomerKey, sse_kms_key_id...) are secret-shaped by their
# prefix only: "sse" inside a word is not one (services.lulc_classes, ip_addresses)
SECRET_NAME_PREFIXES = ("sse",)
# Normalised option names that contain such a fragment but hold no secret. signature_version is
# botocore's signing algorithm ("s3v4"), a public setting, not a signature. Containers are never
# exempt from the check of their contents. Most ordinary options (endpoint_url, region_name, anon,
# use_ssl, profile, requester_pays, client_kwargs, config_kwargs, s3_additional_kwargs,
# cache_regions, retries.max_attempts, ServerSideEncryption) contain no fragment and need no entry.
NON_SECRET_NAMES = frozenset({"signatureversion"})
# an AWS access key id (long-term AKIA…, temporary ASIA…) is a secret wherever it appears
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
ENV_KEYS_HINT = ("object-store keys come only from the environment (AWS_ACCESS_KEY_ID, "
                 "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)")

# calendar years a run may cover: bounds the work a mistyped range (1-99999) can ask for
YEAR_MIN, YEAR_MAX = 1900, 2100

ENV_OVERRIDES = {  # environment variable → config field
    "CARBONSINK_STORE": "store",
    "CARBONSINK_GRID": "grid",
    "CARBONSINK_DOMAIN": "domain",
    "CARBONSINK_YEARS": "years",
    "CARBONSINK_RH_MODEL": "rh_model",
    "CARBONSINK_CHUNK_MB": "chunk_mb",
    "CARBONSINK_SEED": "seed",
    "CARBONSINK_SCHEDULER": "cluster.scheduler",
    "CARBONSINK_WORKERS": "cluster.n_workers",
}


class ConfigError(ValueError):
    pass


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scheduler: str | None = Field(None, description="address of a running dask scheduler; "
                                  "None starts a local multi-process cluster")
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "2GB"


class RegionFile(BaseModel):
    """A region set from a polygon file: each distinct ``field`` value is a region."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    path: str
    field: str
    where: str | None = None   # FIELD=VALUE[,VALUE...]

    @field_validator("path")
    @classmethod
    def _exists(cls, v):
        path, hash_, layer = v.partition("#")
        if not os.path.exists(os.path.expanduser(path)):
            raise ValueError(f"region file {path!r} does not exist")
        return os.path.abspath(os.path.expanduser(path)) + hash_ + layer


class Valuation(BaseModel):
    """InVEST's valuation of the change in storage (SCIENCE.md §7)."""
    model_config = ConfigDict(extra="forbid")
    price: float = Field(gt=0, description="price per t C")
    discount_rate: float = Field(description="% a-1")
    rate_change: float = Field(0.0, description="annual change of the price, % a-1")


class ServicesConfig(BaseModel):
    """The carbon-sequestration services (SCIENCE.md §7, README "Services")."""
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # capacity of the balance: "sequestration" (NEP + CCS of the sink product, physically
    # consistent), "storage" (the standing stock, as seed 003), "auto" = sequestration
    capacity: Literal["auto", "sequestration", "storage"] = "auto"
    # tables replacing the inputs' (or the package's) defaults: CSV paths, hashed by content
    carbon_pools: str | None = None
    lulc_classes: str | None = None
    emission_factors: str | None = None
    # land-use soil respiration, t C ha-1 a-1 by class code (primary codes cover their classes)
    landuse_rates: dict[int, float] | None = None
    valuation: Valuation | None = None
    routing_resolution: float = Field(0.05, gt=0, le=1.0)
    routing_regions: str = "province"
    max_steps: int | None = Field(None, ge=0)
    calm_wind: float = Field(0.0, ge=0)
    # drivers: the years (default: the last of the run), strata of continuous factors
    driver_years: list[int] | None = None
    strata: int = Field(5, ge=2, le=20)
    discretisation: Literal["quantile", "natural", "equal"] = "quantile"
    min_stratum_size: int = Field(1, ge=1)

    @field_validator("carbon_pools", "lulc_classes", "emission_factors")
    @classmethod
    def _exists(cls, v):
        if v is not None and not os.path.exists(os.path.expanduser(v)):
            raise ValueError(f"table {v!r} does not exist")
        return None if v is None else os.path.abspath(os.path.expanduser(v))

    def table_hashes(self) -> dict:
        return {k: _file_sha256(getattr(self, k)) for k in
                ("carbon_pools", "lulc_classes", "emission_factors") if getattr(self, k)}


class ScenariosConfig(BaseModel):
    """Enhancement scenarios (SCIENCE.md §9, README "Enhancement scenarios")."""
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # scenario YAML files; None = the package's demo set (carbonsink/data/scenarios/)
    files: list[str] | None = None
    # the measure catalogue (YAML or CSV, may `extends: default`); None = the package's
    measures: str | None = None
    # the measured baseline: min / mean / max of the sink's domain totals of the last N years
    baseline_years: int = Field(5, ge=1, le=50)
    # the land-use map the allocation starts from (default: the run's last year)
    allocation_year: int | None = None

    @field_validator("files")
    @classmethod
    def _files_exist(cls, v):
        if v is None:
            return None
        out = []
        for f in v:
            if not os.path.exists(os.path.expanduser(f)):
                raise ValueError(f"scenario file {f!r} does not exist")
            out.append(os.path.abspath(os.path.expanduser(f)))
        return out

    @field_validator("measures")
    @classmethod
    def _catalogue_exists(cls, v):
        if v is not None and not os.path.exists(os.path.expanduser(v)):
            raise ValueError(f"measure catalogue {v!r} does not exist")
        return None if v is None else os.path.abspath(os.path.expanduser(v))

    def scenario_files(self) -> list[str]:
        if self.files is not None:
            return list(self.files)
        from importlib.resources import files
        return sorted(str(p) for p in (files("carbonsink") / "data" / "scenarios").iterdir()
                      if str(p).endswith(".yaml"))

    def file_hashes(self) -> dict:
        out = {os.path.basename(f): _file_sha256(f) for f in self.scenario_files()}
        if self.measures:
            out["measures"] = _file_sha256(self.measures)
        return out


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    store: str = "./carbonsink-demo"
    storage_options: dict[str, Any] = Field(default_factory=dict,
                                            description="non-secret fsspec options")
    grid: str = "0.1deg"  # canonical spelling (Grid.name), see _grid
    # the study area (carbonsink.domains): "china", a province, "three-river-headwaters",
    # "bbox:W,S,E,N" or a polygon file [?FIELD=VALUE]; canonical spelling (Domain.key)
    domain: str = "china"
    # region sets of the totals tables: built-in names (province, division, karst_region,
    # yangtze_reach) and polygon files {name, path, field[, where]}
    region_sets: list[str | RegionFile] = Field(
        default_factory=lambda: ["province", "division", "karst_region"])
    years: tuple[int, int] = (2000, 2020)
    chunk_mb: float = Field(32.0, gt=0, le=512)
    rh_model: Literal[RH_MODELS] = DEFAULT_RH_MODEL  # type: ignore[valid-type]
    # cross-validation of the ionic-strength forest: "kfold" (shuffled basin-years, the seed's) or
    # "basin" (whole basins held out); both scores are recorded either way
    ionic_strength_cv: Literal["kfold", "basin"] = "kfold"
    # a forest whose CV R² (of the scheme above) is below ionic_strength_min_r2 explains little of
    # I: "warn" uses it anyway with a logged warning and an `ionic_strength_model_warning` attr on
    # the karst product; "iterate" does not use it and iterates I = 3[Ca2+]eq per pixel instead
    # (SCIENCE.md §2), recorded in the attrs as well
    ionic_strength_min_r2: float = Field(0.3, le=1.0)
    ionic_strength_fallback: Literal["warn", "iterate"] = "warn"
    seed: int = 0
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    scenarios: ScenariosConfig = Field(default_factory=ScenariosConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    # secrets: from the environment only, excluded from dumps
    aws_access_key_id: SecretStr | None = Field(None, exclude=True, repr=False)
    aws_secret_access_key: SecretStr | None = Field(None, exclude=True, repr=False)
    aws_session_token: SecretStr | None = Field(None, exclude=True, repr=False)

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, v):
        # one spelling per grid ("1", "1deg", "1.0" → "1deg"; "1km", "0.01" → "0.01deg"), so that
        # config_hash (and content addresses) do not depend on how the grid was written, and it is
        # the name published records carry (Grid.name). Raises on an unknown preset.
        return get_grid(str(v)).name

    @field_validator("domain", mode="before")
    @classmethod
    def _domain(cls, v):
        from .domains import get_domain
        return get_domain(None if v is None else str(v)).key

    @field_validator("region_sets")
    @classmethod
    def _region_sets(cls, v):
        from .regions import BUILTIN_SETS
        names = []
        for spec in v:
            name = spec if isinstance(spec, str) else spec.name
            if isinstance(spec, str) and spec not in BUILTIN_SETS:
                raise ValueError(f"unknown region set {spec!r}: built-in sets are "
                                 f"{', '.join(BUILTIN_SETS)}; a file is {{name, path, field}}")
            if name in names or name in ("basin", "cell_area", "domain_mask"):
                raise ValueError(f"region set name {name!r} is used twice or reserved")
            names.append(name)
        return v

    @field_validator("years", mode="before")
    @classmethod
    def _years(cls, v):
        if isinstance(v, str):
            v = parse_years(v)
        return v

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, v):
        return reject_secret_options(v)

    @model_validator(mode="after")
    def _check(self):
        if self.years[1] < self.years[0]:
            raise ValueError(f"years {self.years} run backwards")
        _check_year_bounds(*self.years)  # also for years given as a list, not through parse_years
        return self

    # ------------------------------------------------------------------------------------------
    @property
    def year_list(self) -> list[int]:
        return list(range(self.years[0], self.years[1] + 1))

    def domain_obj(self):
        from .domains import get_domain
        return get_domain(self.domain)

    def grid_obj(self):
        """The grid the run computes on: the domain's box at the configured resolution."""
        return self.domain_obj().grid(self.grid)

    def region_set_specs(self) -> list:
        """Region sets as :func:`carbonsink.regions.region_masks` takes them."""
        return [s if isinstance(s, str) else s.model_dump() for s in self.region_sets]

    def resolved_storage_options(self) -> dict:
        """fsspec storage options with secrets from the environment (for the store layer only)."""
        opts = json.loads(json.dumps(self.storage_options))
        if self.store.startswith("s3://"):
            if self.aws_access_key_id and self.aws_secret_access_key:
                opts.setdefault("key", self.aws_access_key_id.get_secret_value())
                opts.setdefault("secret", self.aws_secret_access_key.get_secret_value())
            if self.aws_session_token:
                opts.setdefault("token", self.aws_session_token.get_secret_value())
        return opts

    def public_dict(self) -> dict:
        """The configuration without secrets (safe for attrs, logs and catalogs)."""
        return self.model_dump(mode="json")

    def config_hash(self, exclude=("cluster", "store", "storage_options")) -> str:
        """Hash of what determines the results (not where they go or what computes them)."""
        d = {k: v for k, v in self.public_dict().items() if k not in exclude}
        # the services settings decide only the services products, whose content addresses
        # carry them as parameters (with their tables' contents): NEP & co. keep their versions
        d.pop("services", None)
        d.pop("scenarios", None)
        # polygon files count by content, not by path: an edited basin file gives new versions
        d["domain_fingerprint"] = self.domain_obj().fingerprint
        d["region_files"] = [_file_sha256(s.path.partition("#")[0]) for s in self.region_sets
                             if not isinstance(s, str)]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def reject_secret_options(options: dict) -> dict:
    """Storage options from a file must not carry keys: those come from the environment only."""
    bad = secret_paths(options, "storage_options.")
    if bad:
        raise ValueError(f"storage_options must not hold secrets ({', '.join(bad)}); "
                         f"{ENV_KEYS_HINT}")
    return options


def is_secret_name(name) -> bool:
    """Whether an option name is secret-shaped (see :data:`SECRET_NAME_PARTS`)."""
    norm = re.sub(r"[_\-.]", "", str(name).lower())
    return norm not in NON_SECRET_NAMES and (any(part in norm for part in SECRET_NAME_PARTS)
                                             or norm.startswith(SECRET_NAME_PREFIXES))


def secret_paths(obj, prefix: str = "") -> list[str]:
    """Paths (``a.b[0].c``, never values) of every secret-shaped key in ``obj``, at any depth of
    dicts and lists, and of every string value that holds an AWS access key id."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}{k}"
            if is_secret_name(k):
                found.append(path)
            else:
                found += secret_paths(v, path + ".")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found += secret_paths(v, f"{prefix.removesuffix('.')}[{i}].")
    elif isinstance(obj, str) and _AWS_KEY_ID.search(obj):
        found.append(prefix.removesuffix(".") or "value")
    return found


def parse_years(text: str) -> tuple[int, int]:
    """'2000-2020' → (2000, 2020); '2005' → (2005, 2005); years within 1900–2100."""
    parts = str(text).replace("–", "-").split("-")
    try:
        if len(parts) == 1:
            years = (int(parts[0]),) * 2
        elif len(parts) == 2:
            years = (int(parts[0]), int(parts[1]))
        else:
            years = None
    except ValueError:
        years = None
    if years is None:
        raise ConfigError(f"years must look like 2000-2020, got {text!r}")
    _check_year_bounds(*years, shown=text)
    return years


def _check_year_bounds(first: int, last: int, shown=None):
    if not (YEAR_MIN <= first <= YEAR_MAX and YEAR_MIN <= last <= YEAR_MAX):
        shown = f"{first}-{last}" if shown is None else shown
        raise ConfigError(f"years {shown!r} must lie within {YEAR_MIN}–{YEAR_MAX}")


def _set_dotted(d: dict, dotted: str, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def load_config(path: str | os.PathLike | None = None, env: dict | None = None,
                defaults: dict | None = None, **overrides) -> RunConfig:
    """defaults ← ``defaults`` ← YAML file ← CARBONSINK_* environment ← ``overrides`` (None values
    ignored).

    ``overrides`` keys may be dotted (``cluster.scheduler``); ``defaults`` are what the situation
    implies when nothing else says (e.g. the grid and years of the inputs a run computes from).
    """
    env = os.environ if env is None else env
    data: dict = {}
    if path is not None:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must be a mapping")
    data = {**(defaults or {}), **data}
    for var, field in ENV_OVERRIDES.items():
        if env.get(var):
            _set_dotted(data, field, env[var])
    for k, v in overrides.items():
        if v is not None:
            _set_dotted(data, k, v)
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint and str(data.get("store", "")).startswith("s3://"):
        # not a secret: kept in storage_options so workers and the catalog know where S3 is
        opts = data.setdefault("storage_options", {})
        opts.setdefault("client_kwargs", {}).setdefault("endpoint_url", endpoint)
    # everything so far came from files, ``defaults``, CARBONSINK_* and overrides: none may carry a
    # secret (a top-level aws_secret_access_key in a YAML used to be accepted and used); keys are
    # added below from AWS_* only
    bad = secret_paths(data)
    if bad:
        raise ConfigError(f"invalid configuration{f' in {path}' if path else ''}: "
                          f"a run configuration must not hold secrets ({', '.join(bad)}); "
                          f"{ENV_KEYS_HINT}")
    for var, field in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
                       ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
                       ("AWS_SESSION_TOKEN", "aws_session_token")):
        if env.get(var):
            data[field] = env[var]
    try:
        return RunConfig(**data)
    except ValidationError as e:  # one readable line per problem, no input values (no secrets)
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'config'}: {err['msg']}"
                             for err in e.errors())
        raise ConfigError(f"invalid configuration{f' in {path}' if path else ''}: "
                          f"{_scrub(problems, data)}") from None


def _scrub(text: str, data: dict) -> str:
    for field in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        if data.get(field):
            text = text.replace(str(data[field]), "***")
    return text
