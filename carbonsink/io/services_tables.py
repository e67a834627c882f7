"""The tables of the carbon-sequestration services (SCIENCE.md §7): read, check, canonicalise.

Four tables, each a CSV in canonical columns and units; the defaults ship with the package
(``carbonsink/data``) and a user's table replaces them (ingest manifest ``tables:``, or the run
configuration's ``services`` section):

``carbon_pools.csv``
    InVEST's carbon-model table, unchanged: ``lucode, c_above, c_below, c_soil, c_dead`` in
    t C ha⁻¹ (extra columns such as ``LULC_name`` are kept). Default: seed 003 table 2 for the six
    CNLUCC primary classes (``carbon_pools_seed003.csv``).
``lulc_classes.csv``
    ``code, name, primary``: each land-use code and its primary class (CNLUCC: 1 cropland,
    2 forest, 3 grassland, 4 water, 5 built-up, 6 unused). Default ``cnlucc_classes.csv``.
``emission_factors.csv``
    ``fuel, factor, units, source``: t C per t standard coal equivalent (tce) for each fuel of the
    energy statistics. Default ``emission_factors.csv`` (IPCC 2006 default carbon contents).
``province_statistics.csv``
    ``year, province, population, pigs, large_livestock, wood, cement`` and ``energy_<fuel>`` for
    each fuel of the factor table: persons, head (year-end stock), t, t and tce. Provinces by
    English or Chinese name (normalised to the English names of :mod:`carbonsink.regions`).

Every problem raises :class:`TableError` naming the table, the column and the rows.
"""
from __future__ import annotations

import io
import os
from importlib import resources

import numpy as np
import pandas as pd

from .validate import InputError

POOL_COLUMNS = ("c_above", "c_below", "c_soil", "c_dead")
STAT_COLUMNS = ("population", "pigs", "large_livestock", "wood", "cement")
STAT_UNITS = {"population": "persons", "pigs": "head", "large_livestock": "head", "wood": "t",
              "cement": "t", "energy": "tce"}
FACTOR_UNITS = "t C tce-1"
PRIMARY_NAMES = {1: "cropland", 2: "forest", 3: "grassland", 4: "water", 5: "built_up",
                 6: "unused"}


class TableError(InputError):
    """A services table that cannot be used (names the table, the column and the problem)."""

    def __init__(self, table: str, column: str | None, problem: str):
        InputError.__init__(self, column, table, problem)
        self.table = table

    def __str__(self):
        what = f"column {self.variable!r} of " if self.variable else ""
        return f"{what}the {self.table}: {self.problem}"

    def __reduce__(self):
        return (type(self), (self.table, self.variable, self.problem))


def _data(name: str) -> bytes:
    return resources.files("carbonsink").joinpath("data", name).read_bytes()


def _frame(src, table: str) -> pd.DataFrame:
    """A DataFrame from a DataFrame, CSV bytes or a path."""
    if isinstance(src, pd.DataFrame):
        return src.copy()
    try:
        if isinstance(src, (bytes, bytearray)):
            return pd.read_csv(io.BytesIO(src))
        if isinstance(src, (str, os.PathLike)):
            return pd.read_csv(src)
    except (OSError, ValueError) as e:
        raise TableError(table, None, f"cannot be read: {e}") from e
    raise TableError(table, None, f"expected a DataFrame, CSV bytes or a path, got {type(src)}")


def _require(df: pd.DataFrame, columns, table: str):
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TableError(table, missing[0], f"missing (the table has {list(df.columns)}; "
                                            f"required: {list(columns)})")


def _numeric(df: pd.DataFrame, column: str, table: str, *, nonneg: bool = True) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype="f8")
    bad = ~np.isfinite(values)
    if bad.any():
        raise TableError(table, column, f"not a finite number in rows {_rows(df, bad)}")
    if nonneg and (values < 0).any():
        raise TableError(table, column, f"negative in rows {_rows(df, values < 0)} "
                                        f"(values {values[values < 0][:5].tolist()})")
    return values


def _rows(df: pd.DataFrame, bad: np.ndarray) -> list:
    keys = [c for c in ("year", "province", "lucode", "code", "fuel") if c in df.columns]
    sel = df.loc[bad, keys] if keys else df.loc[bad]
    return [tuple(r) if len(r) > 1 else r[0] for r in sel.head(5).itertuples(index=False)] \
        if keys else sel.index[:5].tolist()


def _unique(df: pd.DataFrame, keys, table: str):
    dup = df.duplicated(list(keys), keep=False).to_numpy()
    if dup.any():
        raise TableError(table, keys[-1], f"duplicated {'/'.join(keys)} in rows {_rows(df, dup)}")


# --- pools, classes, factors ------------------------------------------------------------------
def read_pools(src=None, *, table: str = "carbon pool table") -> pd.DataFrame:
    """InVEST's carbon pool table (``lucode`` + the four pools, t C ha⁻¹), checked; the seed 003
    table of the six CNLUCC primary classes by default."""
    df = _frame(_data("carbon_pools_seed003.csv") if src is None else src, table)
    df.columns = [str(c).strip() for c in df.columns]
    _require(df, ("lucode",) + POOL_COLUMNS, table)
    df["lucode"] = _numeric(df, "lucode", table).astype(np.int64)
    for c in POOL_COLUMNS:
        df[c] = _numeric(df, c, table)
    _unique(df, ("lucode",), table)
    return df.sort_values("lucode").reset_index(drop=True)


def read_classes(src=None, *, table: str = "land-use class table") -> pd.DataFrame:
    """``code, name, primary`` of every land-use code (CNLUCC by default)."""
    df = _frame(_data("cnlucc_classes.csv") if src is None else src, table)
    _require(df, ("code", "primary"), table)
    df["code"] = _numeric(df, "code", table).astype(np.int64)
    df["primary"] = _numeric(df, "primary", table).astype(np.int64)
    if "name" not in df.columns:
        df["name"] = df["code"].astype(str)
    _unique(df, ("code",), table)
    return df.sort_values("code").reset_index(drop=True)


def read_emission_factors(src=None, *, table: str = "emission-factor table") -> pd.DataFrame:
    """``fuel, factor, units, source`` in t C tce⁻¹ (the IPCC 2006 defaults by default)."""
    df = _frame(_data("emission_factors.csv") if src is None else src, table)
    _require(df, ("fuel", "factor"), table)
    df["fuel"] = df["fuel"].astype(str).str.strip().str.lower().str.replace(" ", "_")
    df["factor"] = _numeric(df, "factor", table)
    if "units" in df.columns:
        bad = df["units"].astype(str).str.replace(" ", "").str.lower() != \
            FACTOR_UNITS.replace(" ", "").lower()
        if bad.any():
            raise TableError(table, "units", f"factors must be in {FACTOR_UNITS!r}; rows "
                                             f"{_rows(df, bad.to_numpy())} say otherwise")
    else:
        df["units"] = FACTOR_UNITS
    if "source" not in df.columns:
        df["source"] = ""
    _unique(df, ("fuel",), table)
    return df.reset_index(drop=True)


def primary_of(codes, classes: pd.DataFrame) -> np.ndarray:
    """The primary class of each code by the class table (codes not in it → their first digit,
    the CNLUCC rule; a one-digit code is its own primary class)."""
    codes = np.asarray(codes, dtype=np.int64)
    keys, prim = classes["code"].to_numpy(), classes["primary"].to_numpy()
    pos = np.clip(np.searchsorted(keys, codes), 0, max(keys.size - 1, 0))
    hit = keys.size > 0 and (keys[pos] == codes)
    digits = np.where(codes >= 10, codes // 10 ** np.floor(np.log10(np.maximum(codes, 1)))
                      .astype(np.int64), codes)
    return np.where(hit, prim[pos] if keys.size else digits, digits)


def pool_codes_for(codes, pools: pd.DataFrame, classes: pd.DataFrame, *,
                   source: str = "lulc") -> dict[int, int]:
    """How each land-use code present finds its pools: itself if the pool table has it, else its
    primary class (a table of primary classes serves a map of secondary codes). Codes found in
    neither → :class:`TableError` naming them."""
    codes = np.unique(np.asarray(codes, dtype=np.int64))
    have = set(pools["lucode"].tolist())
    prim = primary_of(codes, classes)
    out, unknown = {}, []
    for c, p in zip(codes.tolist(), prim.tolist()):
        if c in have:
            out[c] = c
        elif p in have:
            out[c] = p
        else:
            unknown.append(c)
    if unknown:
        raise TableError("carbon pool table", "lucode",
                         f"has no row for the land-use codes {unknown[:10]} found in {source} "
                         f"(nor for their primary classes {sorted(set(primary_of(unknown, classes).tolist()))}); "
                         f"the table covers {sorted(have)}")
    return out


# --- province statistics ----------------------------------------------------------------------
def canonical_province(name) -> str | None:
    """The English name (as in :data:`carbonsink.regions.PROVINCES`) of a province spelt in
    English or Chinese (``Inner Mongolia``, ``内蒙古``, ``内蒙古自治区``, ``Xizang``/``Tibet``)."""
    from ..regions import PROVINCES

    def norm(s):
        return "".join(ch for ch in str(s).lower() if ch.isalnum())
    key = norm(name)
    if key == "tibet":
        key = "xizang"
    for zh, (en, _div) in PROVINCES.items():
        if key in (norm(en), norm(zh), norm(zh.rstrip("省市")), norm(zh[:2]), norm(zh[:3])):
            return en
    return None


def read_province_statistics(src, fuels, *, table: str = "province statistics table",
                             years=None) -> pd.DataFrame:
    """The province statistics in canonical columns (``year, province`` + :data:`STAT_COLUMNS` +
    ``energy_<fuel>`` per fuel of the factor table), checked: every column present, numbers finite
    and ≥ 0, provinces known, one row per (year, province), and every year of ``years`` present."""
    df = _frame(src, table)
    df.columns = [str(c).strip() for c in df.columns]
    energy = [f"energy_{f}" for f in fuels]
    _require(df, ("year", "province") + STAT_COLUMNS + tuple(energy), table)
    df["year"] = _numeric(df, "year", table).astype(np.int64)
    names = df["province"].map(canonical_province)
    unknown = names.isna().to_numpy()
    if unknown.any():
        raise TableError(table, "province", "unknown provinces "
                         f"{sorted(set(df.loc[unknown, 'province'].astype(str)))[:10]} (English or "
                         "Chinese names of China's provinces)")
    df["province"] = names
    for c in STAT_COLUMNS + tuple(energy):
        df[c] = _numeric(df, c, table)
    _unique(df, ("year", "province"), table)
    if years is not None:
        missing = sorted(set(int(y) for y in years) - set(df["year"].tolist()))
        if missing:
            raise TableError(table, "year", f"has no rows for the years {missing}")
    return df[["year", "province", *STAT_COLUMNS, *energy]].sort_values(
        ["year", "province"]).reset_index(drop=True)
