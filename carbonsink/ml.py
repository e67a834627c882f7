"""Random-forest ionic-strength model (SCIENCE.md §3): training, k-fold CV, distributed prediction.

Training rows are river basin-years with the seven major ions (mmol L⁻¹); the target is the ionic
strength I = ½(4Ca + 4Mg + Na + K + HCO₃ + 4SO₄ + Cl) [mol L⁻¹] from
:func:`carbonsink.kernels.karst.ionic_strength`. The predictors are the basin-year means of

    pr   annual precipitation, Σ of the 12 monthly totals   [mm a⁻¹]
    tas  annual mean air temperature, mean of 12 months     [°C]
    aet  annual actual evapotranspiration                    [mm a⁻¹]
    npp  annual net primary productivity                     [g C m⁻² a⁻¹]

Basin means are **area-weighted with true cell areas** (SCIENCE.md §0, :func:`carbonsink.zonal.
cell_area_da`) over the cells of the basin where all four predictors are valid, so every predictor of
a row describes the same area; a 1° cell at 53°N counts 0.7× a cell at 30°N. They are reduced chunk by
chunk (one task per predictor and block) on whatever dask scheduler is active; only the
(year × basin) sums come back.

**Forest size by cross-validation.** Unless the caller fixes ``n_estimators``, the number of trees
is chosen by the CV itself (:func:`train_ionic_strength`). Each fold's forest is fitted once with
:data:`RF_SIZE_LADDER`'s largest size (300 trees). The pooled out-of-fold R² of its first k trees is
read off for every k of the ladder (10, 20, 30, 50, 75, 100, 150, 200, 300) from the per-tree
predictions, with no refit. This is exact: scikit-learn draws each tree's seed in turn from
``random_state``, so the first k trees of the 300 are the k-tree forest of the same seed, and the
running sum of their predictions divided by k is, bit for bit, that forest's prediction. The
smallest k from which the R² stays within :data:`RF_SIZE_TOLERANCE` (0.002) of the best R² on the
ladder is used, for the reported CV scores and for the final fit (:func:`choose_forest_size`).
"Stays": the curve wobbles by about ±0.002 from size to size, and a lucky bump at 20 trees is not
taken when 30–75 trees fall out of the band again.

The tolerance is a fixed absolute R², not one standard error of the fold R²s (about 0.01–0.02 here).
More trees never overfit; they only average away Monte-Carlo noise. So the question is not which
size the data support but how much accuracy to give up for speed. One standard error would buy 10–20
trees, and a noisier map, for a loss the CV cannot see. The curve and the choice are kept on the
model (``n_estimators_cv``) and in the product attrs (``ionic_strength_rf_n_estimators``,
``ionic_strength_rf_size_cv``).

The fitted model predicts I per pixel and year chunk by chunk (:func:`predict_ionic_strength`). The
same annual predictor fields are built lazily. The forest is flattened once into the compiled
predictor of :mod:`carbonsink.kernels.forest`, which gives exactly scikit-learn's predictions at
2–2.3× the speed. That flat forest is what is shipped to the workers, once: scattered (broadcast) to
every worker when a distributed client is active, otherwise one ``dask.delayed`` key. Each block
gathers only its valid pixels into an (n, 4) float32 array.

Model files (:func:`save_model`) are joblib pickles: load them only from a store you trust (unpickling
runs code), and with the scikit-learn version they were written with — a different version may refuse
to load or predict differently, so the version is stored with the model and checked on load.
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from .kernels import karst
from .kernels.forest import FlatForest, flatten_forest, predict_forest

ION_COLUMNS = ("ca", "mg", "na", "k", "hco3", "so4", "cl")
PREDICTORS = ("pr", "tas", "aet", "npp")
KEY_COLUMNS = ("basin_id", "year")

PREDICTOR_ATTRS = {
    "pr": {"units": "mm yr-1", "long_name": "annual precipitation (sum of monthly totals)"},
    "tas": {"units": "degC", "long_name": "annual mean near-surface air temperature"},
    "aet": {"units": "mm yr-1", "long_name": "annual actual evapotranspiration"},
    "npp": {"units": "g m-2 yr-1", "long_name": "annual net primary productivity"},
}

# spatial tile when numpy-backed inputs are given without chunks: 256² pixels × 4 predictors ×
# 8 bytes × 21 years ≈ 44 MB of RF input per block
DEFAULT_SPATIAL_CHUNK = 256

# n_estimators is not here: unless given, it is chosen by cross-validation (RF_SIZE_LADDER)
DEFAULT_RF_PARAMS = {"min_samples_leaf": 1, "max_features": 1.0}
# forest sizes whose out-of-fold R² is compared; each fold is fitted once with the largest
RF_SIZE_LADDER = (10, 20, 30, 50, 75, 100, 150, 200, 300)
# the smallest size whose pooled out-of-fold R² is within this of the best on the ladder is used
RF_SIZE_TOLERANCE = 0.002


class IonTableError(ValueError):
    """A river ion table that cannot be used: names the source and every problem found."""

    def __init__(self, source: str | None, problems: list[str]):
        self.source, self.problems = source, list(problems)
        where = f" {source}" if source else ""
        super().__init__(f"ion table{where}: " + "; ".join(self.problems))


# ================================================================================================
# The ion table
# ================================================================================================
def _basin_ids_on_grid(basins: xr.DataArray) -> set[int]:
    values = np.unique(np.asarray(basins.values))
    return {int(v) for v in values if np.isfinite(v) and v != 0}


def _examples(items, n=5) -> str:
    items = list(items)
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


def validate_ion_table(table: pd.DataFrame, basins: xr.DataArray | None = None, n_splits: int = 10,
                       source: str | None = None) -> pd.DataFrame:
    """Check a river ion table and return a clean copy (integer keys, float ions, sorted).

    Columns ``basin_id``, ``year`` and the seven ions of :data:`ION_COLUMNS` in mmol L⁻¹. Raises
    :class:`IonTableError` naming ``source`` and every problem: missing columns, non-numeric columns,
    NaNs, negative concentrations (ion and count), non-integer keys, basins absent from the
    ``basins`` mask (ids with no cell on its grid; skipped when ``basins`` is None), duplicate
    basin-year rows, and fewer rows than the ``n_splits`` cross-validation folds.
    """
    if not isinstance(table, pd.DataFrame):
        raise IonTableError(source, [f"expected a pandas DataFrame, got {type(table).__name__}"])
    required = KEY_COLUMNS + ION_COLUMNS
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise IonTableError(source, [f"missing columns {missing} (has {list(table.columns)})"])
    problems = []
    non_numeric = [c for c in required if not pd.api.types.is_numeric_dtype(table[c])
                   or pd.api.types.is_bool_dtype(table[c])]
    if non_numeric:
        problems.append(f"non-numeric columns {non_numeric} "
                        f"(dtypes {[str(table[c].dtype) for c in non_numeric]})")
    numeric = [c for c in required if c not in non_numeric]
    nans = {c: int(table[c].isna().sum()) for c in numeric if table[c].isna().any()}
    if nans:
        problems.append("NaN values " + ", ".join(f"{c}: {n} rows" for c, n in nans.items()))
    for c in ION_COLUMNS:
        if c in numeric:
            neg = int((table[c] < 0).sum())
            if neg:
                problems.append(f"negative {c} concentration in {neg} rows "
                                f"(min {table[c].min()!r} mmol L-1)")
    for c in KEY_COLUMNS:
        if c in numeric:
            v = table[c].dropna().to_numpy(dtype="f8")
            bad = v[v != np.round(v)]
            if bad.size:
                problems.append(f"non-integer {c} values: {_examples(np.unique(bad))}")
    if not problems and basins is not None:
        on_grid = _basin_ids_on_grid(basins)
        absent = sorted(set(table["basin_id"].astype("i8").tolist()) - on_grid)
        if absent:
            problems.append(f"basin ids absent from the basin mask {basins.name!r} (no cell on its "
                            f"grid): {_examples(absent)}")
    if not problems:
        keys = table[list(KEY_COLUMNS)].astype("i8")
        dup = keys[keys.duplicated(keep=False)].drop_duplicates()
        if len(dup):
            pairs = [f"(basin {b}, {y})" for b, y in dup.itertuples(index=False)]
            problems.append(f"duplicate basin-year rows: {_examples(pairs)}")
    if len(table) < n_splits:
        problems.append(f"{len(table)} rows, fewer than the {n_splits} cross-validation folds")
    if problems:
        raise IonTableError(source, problems)
    out = table[list(required)].copy()
    out["basin_id"] = out["basin_id"].astype("i8")
    out["year"] = out["year"].astype("i8")
    for c in ION_COLUMNS:
        out[c] = out[c].astype("f8")
    return out.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)


def ionic_strength_of(table: pd.DataFrame) -> np.ndarray:
    """I [mol L⁻¹] of each row of an ion table in mmol L⁻¹ (SCIENCE.md §2)."""
    return karst.ionic_strength(*(table[c].to_numpy() for c in ION_COLUMNS), units="mmol L-1")


def table_hash(table: pd.DataFrame) -> str:
    """sha256 of the table's keys and ions, sorted, as CSV — the training table's identity."""
    cols = list(KEY_COLUMNS + ION_COLUMNS)
    t = table[cols].sort_values(list(KEY_COLUMNS)).reset_index(drop=True)
    text = t.to_csv(index=False, float_format="%.9g", lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


# ================================================================================================
# Predictors
# ================================================================================================
def annual_predictors(inputs: xr.Dataset) -> xr.Dataset:
    """The four annual predictor fields (year, lat, lon), lazy if the inputs are: P the annual
    total and T the days-weighted annual mean of the monthly inputs (the same aggregation as every
    annual model, :func:`carbonsink.products.climate.annual_drivers`), aet and npp as given."""
    from .products.climate import annual_drivers

    missing = [v for v in PREDICTORS if v not in inputs.data_vars]
    if missing:
        raise ValueError(f"inputs lack predictor variables {missing} "
                         f"(have {sorted(inputs.data_vars)})")
    drivers = annual_drivers(inputs)
    ds = xr.Dataset({"pr": drivers["pr"], "tas": drivers["tas"], "aet": drivers["aet"],
                     "npp": inputs["npp"]}).transpose("year", "lat", "lon")
    for v in PREDICTORS:
        ds[v].attrs = dict(PREDICTOR_ATTRS[v])
    return ds


def _check_same_grid(mask: xr.DataArray, ds: xr.Dataset):
    for c in ("lat", "lon"):
        if mask.sizes.get(c) != ds.sizes.get(c) or not np.allclose(
                mask[c].values, ds[c].values, atol=1e-6):
            raise ValueError(f"basin mask {mask.name!r} is not on the inputs' grid "
                             f"(coordinate {c!r} differs)")


def basin_predictors(inputs: xr.Dataset, basins: xr.DataArray) -> pd.DataFrame:
    """Area-weighted basin-year means of the predictors: columns basin_id, year, pr, tas, aet, npp.

    ``basins``: integer (lat, lon) mask, 0 outside every basin, ids in ``flag_values`` (or, without
    attrs, the ids present). Mean = Σ X·A / Σ A over the basin's cells where all four predictors are
    valid, A the true cell area. Block sums (:func:`carbonsink.zonal.zonal_sums`) on the active
    dask scheduler (a distributed client if one is active); a basin with no valid cell in a year
    gets NaN.
    """
    from .zonal import zonal_sums

    fields = annual_predictors(inputs)
    _check_same_grid(basins, fields)
    ids = basins.attrs.get("flag_values")
    ids = np.array(sorted(int(i) for i in ids) if ids is not None
                   else sorted(_basin_ids_on_grid(basins)), dtype="int32")
    valid = fields["pr"].notnull()
    for v in PREDICTORS[1:]:
        valid = valid & fields[v].notnull()
    # every predictor NaN where any is: one valid area, the same for all four
    mask = basins.assign_coords(lat=fields.lat, lon=fields.lon)
    sums = zonal_sums({v: fields[v].where(valid) for v in PREDICTORS}, {"basin": (mask, ids)},
                      domain=False)                                  # (4, year, 2, basin)
    a = sums[0, :, 1, :]
    years = fields["year"].values
    out = {"basin_id": np.tile(ids.astype("i8"), years.size),
           "year": np.repeat(years.astype("i8"), ids.size)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, v in enumerate(PREDICTORS):
            out[v] = np.where(a > 0, sums[k, :, 0, :] / a, np.nan).ravel()
    df = pd.DataFrame(out)
    df.attrs["units"] = {v: PREDICTOR_ATTRS[v]["units"] for v in PREDICTORS}
    df.attrs["method"] = ("area-weighted (true cell areas) basin-year means over cells where all "
                          "predictors are valid; pr = annual sum of monthly totals, tas = annual "
                          "mean of monthly means")
    return df


# ================================================================================================
# The model
# ================================================================================================
@dataclass
class IonicStrengthModel:
    """A fitted random forest of ionic strength I [mol L⁻¹] with its cross-validation scores."""

    regressor: object                       # sklearn.ensemble.RandomForestRegressor, fitted
    predictors: tuple[str, ...]
    cv_r2: float                            # pooled out-of-fold R²
    cv_rmse: float                          # pooled out-of-fold RMSE, mol L⁻¹
    feature_importances: dict[str, float]   # impurity importances of the final fit
    n_rows: int
    sklearn_version: str
    table_hash: str
    n_splits: int = 10
    seed: int = 0
    rf_params: dict = field(default_factory=dict)
    cv_r2_folds: tuple[float, ...] = ()
    target_range: tuple[float, float] = (np.nan, np.nan)
    cv: str = "kfold"                       # the scheme of cv_r2 / cv_rmse
    basin_cv_r2: float = np.nan             # leave-basins-out (GroupKFold) R²: ungauged basins
    basin_cv_rmse: float = np.nan
    basin_cv_folds: int = 0
    # out-of-fold predictions of the CV scheme above: basin_id, year, observed, predicted (mol L⁻¹)
    cv_predictions: object = field(default=None, repr=False, compare=False)
    # forest size by CV: ((k, pooled out-of-fold R² of the first k trees), ...) of the CV scheme
    # above, and the tolerance of the choice; () and NaN when the caller fixed n_estimators.
    # (Plain defaults, no default_factory: models pickled before these fields load with them.)
    n_estimators_cv: tuple = ()
    n_estimators_tolerance: float = np.nan

    @property
    def flat_forest(self) -> FlatForest:
        """The regressor flattened for :func:`carbonsink.kernels.forest.predict_forest` (computed
        on first use and kept; not pickled with the model, so model files are unchanged)."""
        flat = self.__dict__.get("_flat_forest")
        if flat is None:
            flat = self.__dict__["_flat_forest"] = flatten_forest(self.regressor)
        return flat

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_flat_forest", None)
        return state

    def predict(self, x: np.ndarray) -> np.ndarray:
        """I [mol L⁻¹] for rows of predictors in :attr:`predictors` order (n, k), by scikit-learn
        (the grid uses the compiled :attr:`flat_forest`, whose predictions are the same)."""
        return self.regressor.predict(np.asarray(x, dtype="f8"))

    def to_attrs(self, prefix: str = "ionic_strength_") -> dict:
        """Flat, JSON-able scores and provenance for product attrs."""
        p = prefix
        attrs = {
            f"{p}model": "sklearn.ensemble.RandomForestRegressor",
            f"{p}predictors": " ".join(self.predictors),
            f"{p}cv_folds": int(self.n_splits),
            f"{p}cv_scheme": {"kfold": "KFold over basin-years, shuffled",
                              "basin": "GroupKFold by basin (whole basins held out)"}[self.cv],
            f"{p}cv_r2": float(self.cv_r2),
            f"{p}cv_rmse": float(self.cv_rmse),
            f"{p}cv_rmse_units": "mol L-1",
            f"{p}cv_r2_fold_mean": float(np.mean(self.cv_r2_folds)) if self.cv_r2_folds
            else float("nan"),
            f"{p}basin_cv_r2": float(self.basin_cv_r2),
            f"{p}basin_cv_rmse": float(self.basin_cv_rmse),
            f"{p}basin_cv_folds": int(self.basin_cv_folds),
            f"{p}n_training_rows": int(self.n_rows),
            f"{p}training_table_sha256": self.table_hash,
            f"{p}sklearn_version": self.sklearn_version,
            f"{p}seed": int(self.seed),
            f"{p}target_min": float(self.target_range[0]),
            f"{p}target_max": float(self.target_range[1]),
        }
        attrs[f"{p}rf_size_choice"] = "cv" if self.n_estimators_cv else "given"
        attrs[f"{p}rf_size_cv"] = " ".join(f"{k}:{r2:.5f}" for k, r2 in self.n_estimators_cv) \
            if self.n_estimators_cv else "none"
        attrs[f"{p}rf_size_tolerance"] = float(self.n_estimators_tolerance)
        for k, v in sorted(self.rf_params.items()):
            attrs[f"{p}rf_{k}"] = v if isinstance(v, (bool, int, float, str)) or v is None \
                else str(v)
        for name, imp in self.feature_importances.items():
            attrs[f"{p}importance_{name}"] = float(imp)
        # netCDF/Zarr attrs cannot hold None or NaN portably
        return {k: ("none" if v is None or (isinstance(v, float) and np.isnan(v)) else v)
                for k, v in attrs.items()}


def _training_frame(table, predictors, n_splits, drop_unmatched, source):
    table = validate_ion_table(table, None, n_splits=n_splits, source=source)
    missing = [c for c in KEY_COLUMNS + PREDICTORS if c not in predictors.columns]
    if missing:
        raise ValueError(f"predictor table lacks columns {missing}")
    pred = predictors[list(KEY_COLUMNS + PREDICTORS)].copy()
    pred["basin_id"] = pred["basin_id"].astype("i8")
    pred["year"] = pred["year"].astype("i8")
    merged = table.merge(pred, on=list(KEY_COLUMNS), how="left", validate="one_to_one")
    unmatched = merged[list(PREDICTORS)].isna().any(axis=1)
    if unmatched.any():
        pairs = [f"(basin {b}, {y})" for b, y in merged.loc[unmatched, list(KEY_COLUMNS)]
                 .itertuples(index=False)]
        if not drop_unmatched:
            raise IonTableError(source, [
                f"{int(unmatched.sum())} rows have no (or NaN) predictors — years outside the "
                f"inputs or basins without valid cells: {_examples(pairs)}; pass "
                "drop_unmatched=True to train without them"])
        warnings.warn(f"dropping {int(unmatched.sum())} ion-table rows without predictors: "
                      f"{_examples(pairs)}", stacklevel=3)
        merged = merged[~unmatched].reset_index(drop=True)
        if len(merged) < n_splits:
            raise IonTableError(source, [f"{len(merged)} rows with predictors, fewer than the "
                                         f"{n_splits} cross-validation folds"])
    return merged


CV_SCHEMES = ("kfold", "basin")


def _out_of_fold(x, y, splits, params, sizes=None):
    """Pooled out-of-fold predictions and per-fold R² of the forest over ``splits``.

    ``sizes`` None: one forest per fold with ``params``; returns (oof, fold_r2). Otherwise each
    fold's forest is fitted once with max(sizes) trees and the predictions of its first k trees
    are read off the per-tree predictions for every k of ``sizes``; returns {k: (oof, fold_r2)}.
    The first k trees are the k-tree forest of the same ``random_state`` (sklearn draws the tree
    seeds in turn), and their predictions are summed in tree order from 0.0 and divided by k, as
    ``RandomForestRegressor.predict`` does: bit for bit the k-tree forest's out-of-fold values.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score

    ks = (int(params["n_estimators"]),) if sizes is None else tuple(sizes)
    fit = {**params, "n_estimators": max(ks)}
    oof = {k: np.empty_like(y) for k in ks}
    fold_r2 = {k: [] for k in ks}
    for train, test in splits:
        rf = RandomForestRegressor(**fit).fit(x[train], y[train])
        x_test = np.ascontiguousarray(x[test], dtype=np.float32)    # as the forest's predict
        per_tree = np.stack([t.predict(x_test, check_input=False) for t in rf.estimators_])
        per_tree[0] += 0.0                      # the forest's sum starts from +0.0
        running = np.cumsum(per_tree, axis=0)   # sequential, in tree order
        for k in ks:
            oof[k][test] = running[k - 1] / k
            fold_r2[k].append(float(r2_score(y[test], oof[k][test])) if len(test) > 1
                              else float("nan"))
    if sizes is None:
        return oof[ks[0]], fold_r2[ks[0]]
    return {k: (oof[k], fold_r2[k]) for k in ks}


def _size_ladder(sizes) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if not sizes or any(isinstance(k, bool) or int(k) != k or k < 1 for k in sizes):
        raise ValueError(f"size_ladder must be positive integers, got {sizes!r}")
    return tuple(sorted({int(k) for k in sizes}))


def choose_forest_size(curve, tolerance: float = RF_SIZE_TOLERANCE) -> int:
    """The smallest k of ``curve`` ((k, R²), ...) from which the R² stays within ``tolerance`` of
    the best: every k' ≥ k of the ladder is within it too. An early lucky bump (the curve is noisy
    by about ±0.002 from tree to tree) is not taken when larger forests fall out of the band again.
    """
    curve = sorted((int(k), float(r2)) for k, r2 in curve)
    floor = max(r2 for _, r2 in curve) - tolerance
    chosen = curve[-1][0]
    for k, r2 in reversed(curve):
        if r2 < floor:
            break
        chosen = k
    return chosen


def train_ionic_strength(table: pd.DataFrame, predictors: pd.DataFrame, n_splits: int = 10,
                         seed: int = 0, *, cv: str = "kfold", drop_unmatched: bool = False,
                         source: str | None = None, size_ladder=RF_SIZE_LADDER,
                         size_tolerance: float = RF_SIZE_TOLERANCE,
                         **rf_params) -> IonicStrengthModel:
    """Fit the random forest of I [mol L⁻¹] on basin-year predictors, with k-fold CV (SCIENCE.md §3).

    ``table``: ion table (mmol L⁻¹), see :func:`validate_ion_table`; ``predictors``: output of
    :func:`basin_predictors`, joined on (basin_id, year). CV (``cv_r2``, ``cv_rmse``):
    ``cv="kfold"`` (the seed's 10-fold scores) — ``KFold(n_splits, shuffle=True,
    random_state=seed)`` over basin-years, out-of-fold predictions pooled into one R² and RMSE,
    plus the per-fold R²; ``cv="basin"`` — ``GroupKFold`` by basin, whole basins held out. The
    leave-basins-out scores are always reported too (``basin_cv_r2``, ``basin_cv_rmse``, with
    min(n_splits, basins) folds): the forest predicts I for every pixel, mostly in basins without
    a station, and shuffled k-fold — which sees other years of the same basin — is optimistic about
    that. The final model is refitted on all rows. ``rf_params`` go to ``RandomForestRegressor``
    (defaults :data:`DEFAULT_RF_PARAMS`, ``random_state=seed``).

    Forest size: ``n_estimators`` in ``rf_params`` fixes it. Without it (or with None) it is
    chosen by the CV scheme ``cv``: each fold's forest is fitted with max(``size_ladder``) trees,
    the pooled out-of-fold R² of its first k trees is computed for every k of ``size_ladder`` (no
    refits; equal to k-tree forests of the same seed), and the smallest k from which it stays
    within ``size_tolerance`` of the best is taken (:func:`choose_forest_size`; curve in
    ``n_estimators_cv``). The CV scores reported are the
    chosen size's; the other scheme's scores and the final fit use that size.
    """
    import sklearn
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import mean_squared_error, r2_score
    from sklearn.model_selection import GroupKFold, KFold

    if cv not in CV_SCHEMES:
        raise ValueError(f"cv must be one of {CV_SCHEMES}, got {cv!r}")
    frame = _training_frame(table, predictors, n_splits, drop_unmatched, source)
    x = frame[list(PREDICTORS)].to_numpy(dtype="f8")
    y = ionic_strength_of(frame)
    groups = frame["basin_id"].to_numpy()
    n_basins = len(np.unique(groups))
    if cv == "basin" and n_basins < n_splits:
        raise IonTableError(source, [f"{n_basins} basins, fewer than the {n_splits} "
                                     "cross-validation folds of cv='basin'"])
    params = {**DEFAULT_RF_PARAMS, "random_state": seed, **rf_params}
    basin_folds = min(n_splits, n_basins)

    def splits(scheme):
        if scheme == "kfold":
            return KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(x)
        return GroupKFold(n_splits=basin_folds).split(x, groups=groups)

    curve, tolerance = (), np.nan
    if params.get("n_estimators") is None:
        ladder = _size_ladder(size_ladder)
        by_size = _out_of_fold(x, y, splits(cv), params, sizes=ladder)
        curve = tuple((k, float(r2_score(y, by_size[k][0]))) for k in ladder)
        tolerance = float(size_tolerance)
        params["n_estimators"] = choose_forest_size(curve, tolerance)
        scores = {cv: by_size[params["n_estimators"]]}
    else:
        scores = {cv: _out_of_fold(x, y, splits(cv), params)}
    if cv == "kfold" and basin_folds >= 2:      # leave-basins-out, at the chosen size
        scores["basin"] = _out_of_fold(x, y, splits("basin"), params)
    oof, fold_r2 = scores[cv]
    basin_r2 = basin_rmse = np.nan
    if basin_folds >= 2:
        b_oof = scores["basin"][0]
        basin_r2 = float(r2_score(y, b_oof))
        basin_rmse = float(np.sqrt(mean_squared_error(y, b_oof)))
    final = RandomForestRegressor(**params).fit(x, y)
    return IonicStrengthModel(
        regressor=final, predictors=tuple(PREDICTORS),
        cv_r2=float(r2_score(y, oof)), cv_rmse=float(np.sqrt(mean_squared_error(y, oof))),
        feature_importances={p: float(v) for p, v in zip(PREDICTORS, final.feature_importances_)},
        n_rows=int(len(frame)), sklearn_version=sklearn.__version__, table_hash=table_hash(frame),
        n_splits=int(n_splits), seed=int(seed), rf_params=params, cv_r2_folds=tuple(fold_r2),
        target_range=(float(y.min()), float(y.max())), cv=cv, basin_cv_r2=basin_r2,
        basin_cv_rmse=basin_rmse, basin_cv_folds=basin_folds if basin_folds >= 2 else 0,
        cv_predictions=pd.DataFrame({"basin_id": frame["basin_id"].to_numpy(),
                                     "year": frame["year"].to_numpy(), "observed": y,
                                     "predicted": oof}),
        n_estimators_cv=curve, n_estimators_tolerance=tolerance)


# ================================================================================================
# Prediction on the grid
# ================================================================================================
def _predict_block(pr, tas, aet, npp, land, forest):
    """RF prediction on one (year, lat, lon) block; NaN where any predictor is NaN or off land.

    Only the valid pixels are gathered, into an (n, 4) float32 array: the forest predicts on
    float32 anyway (scikit-learn rounds X to float32, as :func:`~carbonsink.kernels.forest.
    predict_forest` does), so the values are unchanged and no float64 stack of the block is made.
    """
    fields = (pr, tas, aet, npp)
    ok = land > 0
    for a in fields:
        ok &= np.isfinite(a)
    out = np.full(pr.shape, np.nan, dtype="f4")
    n = int(np.count_nonzero(ok))
    if n:
        x = np.empty((n, len(fields)), dtype="f4")
        for j, a in enumerate(fields):
            x[:, j] = a[ok]
        out[ok] = predict_forest(x, forest)
    return out


def _default_client():
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def predict_ionic_strength(model: IonicStrengthModel, inputs: xr.Dataset, *,
                           chunks: dict | None = None, client="auto") -> xr.DataArray:
    """Ionic strength I [mol L⁻¹] per pixel and year (year, lat, lon), float32, lazy.

    The annual predictors are built per chunk (:func:`annual_predictors`) and the model is applied
    block by block; nothing is gathered. NaN off land (``land_mask`` when present) and where any
    predictor is NaN. ``chunks``: optional spatial rechunking, e.g. ``{"lat": 64, "lon": 64}``.
    ``client``: "auto" scatters the flattened forest (:attr:`IonicStrengthModel.flat_forest`, the
    compiled predictor's input, exactly the regressor's predictions) to every worker of the active
    distributed client (one transfer per worker); None embeds it as one ``dask.delayed`` key (any
    scheduler).
    """
    if tuple(model.predictors) != PREDICTORS:
        raise ValueError(f"model predictors {model.predictors} are not {PREDICTORS}")
    fields = annual_predictors(inputs)
    if "land_mask" in inputs:
        land = inputs["land_mask"]
    else:
        land = xr.ones_like(fields["pr"].isel(year=0, drop=True), dtype="u1")
    land = land.astype("u1").broadcast_like(fields["pr"]).transpose("year", "lat", "lon")
    arrays = [fields[v] for v in PREDICTORS] + [land]
    target = {"year": -1, **(chunks or {})}
    if not any(isinstance(a.data, da.Array) for a in arrays) and not chunks:
        target.update(lat=DEFAULT_SPATIAL_CHUNK, lon=DEFAULT_SPATIAL_CHUNK)
    arrays = [a.chunk(target) for a in arrays]
    # one spatial tiling for all five (the monthly groupby may tile differently)
    data = da.core.unify_chunks(*[x for a in arrays for x in (a.data, "ijk")])[1]

    if client == "auto":
        client = _default_client()
    forest = model.flat_forest          # flattened once, here; the workers only walk it
    if client is not None:
        (ref,) = client.scatter([forest], broadcast=True, hash=True)
    else:
        ref = dask.delayed(forest, pure=True)
    result = da.map_blocks(_predict_block, *data, forest=ref, dtype="f4",
                           token="ionic-strength-rf")
    out = xr.DataArray(result, dims=("year", "lat", "lon"),
                       coords={"year": fields["year"], "lat": fields["lat"],
                               "lon": fields["lon"]}, name="ionic_strength")
    out.attrs.update({
        "units": "mol L-1",
        "long_name": "ionic strength of karst water (random-forest prediction)",
        "cell_methods": "year: mean",
        "comment": "I = 1/2 sum(c_i z_i^2) predicted from annual pr, tas, aet, npp by a random "
                   "forest trained on river basin-years (SCIENCE.md section 3)",
        **model.to_attrs(),
    })
    return out


# ================================================================================================
# Persistence
# ================================================================================================
def model_bytes(model: IonicStrengthModel) -> bytes:
    """The model serialised with joblib (compress=3), as stored next to a product."""
    import joblib

    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    return buf.getvalue()


def save_model(model: IonicStrengthModel, store, rel_path: str) -> str:
    """Write the model as joblib bytes at ``rel_path`` in a :class:`carbonsink.io.store.Store`
    (atomic), plus ``<rel_path>.json`` with its scores; returns the model URL.

    A pickle is tied to the scikit-learn version that wrote it (recorded in the model and the JSON).
    """
    uri = store.write_bytes(rel_path, model_bytes(model))
    store.write_text(rel_path + ".json", json.dumps(model.to_attrs(), indent=2, sort_keys=True))
    return uri


def load_model(store, rel_path: str) -> IonicStrengthModel:
    """Read a model written by :func:`save_model`. Unpickling runs code: trusted stores only.
    Warns when the running scikit-learn differs from the one that fitted the model."""
    import joblib
    import sklearn

    data = store.read_bytes(rel_path)
    model = joblib.load(io.BytesIO(data))
    if not isinstance(model, IonicStrengthModel):
        raise TypeError(f"{store.uri(rel_path)} holds a {type(model).__name__}, "
                        "not an IonicStrengthModel")
    if model.sklearn_version != sklearn.__version__:
        warnings.warn(f"model {store.uri(rel_path)} was fitted with scikit-learn "
                      f"{model.sklearn_version}, running {sklearn.__version__}: predictions may "
                      "differ or fail; refit with this version", stacklevel=2)
    return model
