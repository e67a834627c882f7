"""One validated run configuration, from defaults ← YAML ← environment ← explicit overrides.

Secrets (object-store keys) come only from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``); they are held as ``SecretStr`` and leave this module
only through :meth:`RunConfig.resolved_storage_options`, which hands them to fsspec. They never appear
in repr, logs, ``config_hash``, product attrs or catalogs. A YAML that carries keys is rejected.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator,
                      model_validator)

from .grid import get_grid
from .kernels.respiration import DEFAULT_RH_MODEL, RH_MODELS

SECRET_OPTION_KEYS = {"key", "secret", "token", "password", "aws_access_key_id",
                      "aws_secret_access_key", "aws_session_token", "session_token"}

ENV_OVERRIDES = {  # environment variable → config field
    "CARBONSINK_STORE": "store",
    "CARBONSINK_GRID": "grid",
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


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    store: str = "./carbonsink-demo"
    storage_options: dict[str, Any] = Field(default_factory=dict,
                                            description="non-secret fsspec options")
    grid: str = "0.1"
    years: tuple[int, int] = (2000, 2020)
    chunk_mb: float = Field(32.0, gt=0, le=512)
    rh_model: Literal[RH_MODELS] = DEFAULT_RH_MODEL  # type: ignore[valid-type]
    # cross-validation of the ionic-strength forest: "kfold" (shuffled basin-years, the seed's) or
    # "basin" (whole basins held out); both scores are recorded either way
    ionic_strength_cv: Literal["kfold", "basin"] = "kfold"
    seed: int = 0
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    # secrets: from the environment only, excluded from dumps
    aws_access_key_id: SecretStr | None = Field(None, exclude=True, repr=False)
    aws_secret_access_key: SecretStr | None = Field(None, exclude=True, repr=False)
    aws_session_token: SecretStr | None = Field(None, exclude=True, repr=False)

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, v):
        v = str(v)
        get_grid(v)  # raises on an unknown preset
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
        return self

    # ------------------------------------------------------------------------------------------
    @property
    def year_list(self) -> list[int]:
        return list(range(self.years[0], self.years[1] + 1))

    def grid_obj(self):
        return get_grid(self.grid)

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
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def reject_secret_options(options: dict) -> dict:
    """Storage options from a file must not carry keys: those come from the environment only."""
    bad = _secret_keys(options)
    if bad:
        raise ValueError(f"storage_options must not hold secrets ({sorted(bad)}); "
                         "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment")
    return options


def _secret_keys(obj, prefix="") -> set[str]:
    found = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower() in SECRET_OPTION_KEYS:
                found.add(prefix + str(k))
            found |= _secret_keys(v, prefix + str(k) + ".")
    return found


def parse_years(text: str) -> tuple[int, int]:
    """'2000-2020' → (2000, 2020); '2005' → (2005, 2005)."""
    parts = str(text).replace("–", "-").split("-")
    try:
        if len(parts) == 1:
            y = int(parts[0])
            return (y, y)
        if len(parts) == 2:
            return (int(parts[0]), int(parts[1]))
    except ValueError:
        pass
    raise ConfigError(f"years must look like 2000-2020, got {text!r}")


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
