"""The ionic-strength random forest (SCIENCE.md §3): table validation, training, attrs, persistence,
predictors and block-wise prediction on small hand-made data (in-process, no cluster)."""
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from carbonsink import ml
from carbonsink.grid import get_grid
from carbonsink.io.store import Store
from carbonsink.kernels import karst

pytestmark = pytest.mark.unit


def _mask(ids=(1, 2, 3)):
    """A 1° basin mask with one column block per basin id."""
    g = get_grid("1")
    v = np.zeros(g.shape, "int32")
    for k, b in enumerate(ids):
        v[10:20, 10 + 5 * k:15 + 5 * k] = b
    return xr.DataArray(v, dims=("lat", "lon"), coords={"lat": g.lat, "lon": g.lon}, name="basin",
                        attrs={"flag_values": list(ids),
                               "region_names": [f"basin_{b:02d}" for b in ids]})


def _table(n_basins=3, years=range(2000, 2005)):
    rows = [{"basin_id": b, "year": y, "ca": 1.0 + b / 10, "mg": 0.3, "na": 0.2, "k": 0.05,
             "hco3": 2.5, "so4": 0.1, "cl": 0.1}
            for b in range(1, n_basins + 1) for y in years]
    return pd.DataFrame(rows)


# ---- validation -----------------------------------------------------------------------------
def test_valid_table_passes_and_is_cleaned():
    t = _table().sample(frac=1.0, random_state=0)
    t["basin_id"] = t["basin_id"].astype(float)
    out = ml.validate_ion_table(t, _mask(), n_splits=10, source="rivers.csv")
    assert out["basin_id"].dtype == "i8" and list(out.columns) == ["basin_id", "year",
                                                                    *ml.ION_COLUMNS]
    assert out["basin_id"].is_monotonic_increasing


def test_missing_columns_named():
    t = _table().drop(columns=["so4", "cl"])
    with pytest.raises(ml.IonTableError, match=r"rivers\.csv: missing columns \['so4', 'cl'\]"):
        ml.validate_ion_table(t, _mask(), source="rivers.csv")


def test_negative_concentration_names_ion_and_count():
    t = _table()
    t.loc[[0, 3, 7], "mg"] = -0.1
    with pytest.raises(ml.IonTableError, match=r"negative mg concentration in 3 rows") as e:
        ml.validate_ion_table(t, _mask(), source="rivers.csv")
    assert "rivers.csv" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_non_numeric_and_nan_columns():
    t = _table()
    t["na"] = t["na"].astype(str)
    t.loc[2, "k"] = np.nan
    with pytest.raises(ml.IonTableError) as e:
        ml.validate_ion_table(t, _mask(), source="s3://bucket/ions.csv")
    msg = str(e.value)
    assert "non-numeric columns ['na']" in msg and "NaN values k: 1 rows" in msg
    assert "s3://bucket/ions.csv" in msg


def test_basins_absent_from_mask_named():
    t = _table(n_basins=5)          # basins 4 and 5 are not on the mask
    with pytest.raises(ml.IonTableError, match=r"basin ids absent from the basin mask 'basin'.*"
                                               r": 4, 5"):
        ml.validate_ion_table(t, _mask(), source="rivers.csv")


def test_flagged_basin_without_cells_is_absent():
    m = _mask()
    m = m.where(m != 3, 0)          # id 3 still in flag_values, but no cell on the grid
    with pytest.raises(ml.IonTableError, match=r"absent from the basin mask.*: 3$"):
        ml.validate_ion_table(_table(), m)


def test_duplicate_basin_years_named():
    t = pd.concat([_table(), _table().iloc[[4]]], ignore_index=True)
    with pytest.raises(ml.IonTableError, match=r"duplicate basin-year rows: \(basin 1, 2004\)"):
        ml.validate_ion_table(t, _mask(), source="rivers.csv")


def test_fewer_rows_than_folds():
    t = _table(n_basins=1, years=range(2000, 2007))
    with pytest.raises(ml.IonTableError, match=r"7 rows, fewer than the 10 cross-validation folds"):
        ml.validate_ion_table(t, _mask(), n_splits=10, source="rivers.csv")
    ml.validate_ion_table(t, _mask(), n_splits=5)   # enough rows for 5 folds


def test_non_integer_ids():
    t = _table()
    t["year"] = t["year"] + 0.5
    with pytest.raises(ml.IonTableError, match=r"non-integer year values"):
        ml.validate_ion_table(t, _mask())


# ---- training on a known relation -------------------------------------------------------------
def _known(n=240, seed=1):
    """A hand-made training set: I depends on P and T nonlinearly; ions carry it."""
    rng = np.random.default_rng(seed)
    pred = pd.DataFrame({
        "basin_id": np.arange(1, n + 1), "year": 2000,
        "pr": rng.uniform(50, 2000, n), "tas": rng.uniform(-5, 25, n),
        "aet": rng.uniform(50, 800, n), "npp": rng.uniform(50, 900, n)})
    i_mol = 0.03 * np.exp(-pred.pr / 600) + 0.004 * (1 + np.tanh(pred.tas / 8)) + 0.002
    i_mol *= np.exp(0.05 * rng.standard_normal(n))
    unit = np.array([1.0, 0.3, 0.2, 0.05, 2.4, 0.1, 0.1])     # mmol L-1
    unit_i = karst.ionic_strength(*unit, units="mmol L-1")
    conc = np.outer(i_mol / unit_i, unit)
    table = pd.DataFrame(conc, columns=ml.ION_COLUMNS)
    table.insert(0, "year", 2000)
    table.insert(0, "basin_id", pred.basin_id)
    return table, pred, i_mol


@pytest.fixture(scope="module")
def fitted():
    table, pred, i_mol = _known()
    return ml.train_ionic_strength(table, pred, n_splits=10, seed=0, n_estimators=50), pred, i_mol


def test_training_recovers_known_relation(fitted):
    model, pred, i_mol = fitted
    assert model.cv_r2 > 0.8
    assert 0 < model.cv_rmse < 0.3 * i_mol.std()
    assert model.n_rows == 240 and model.predictors == ml.PREDICTORS
    assert len(model.cv_r2_folds) == 10
    imp = model.feature_importances
    assert set(imp) == set(ml.PREDICTORS) and sum(imp.values()) == pytest.approx(1.0)
    assert imp["pr"] > imp["aet"] and imp["pr"] > imp["npp"]     # only P and T carry signal
    assert model.rf_params["n_estimators"] == 50 and model.rf_params["random_state"] == 0
    np.testing.assert_allclose(model.target_range, (i_mol.min(), i_mol.max()))


def test_training_is_deterministic():
    table, pred, _ = _known(n=60)
    a = ml.train_ionic_strength(table, pred, n_splits=5, seed=3, n_estimators=10)
    b = ml.train_ionic_strength(table.iloc[::-1], pred, n_splits=5, seed=3, n_estimators=10)
    assert a.cv_r2 == b.cv_r2 and a.table_hash == b.table_hash


def test_training_rows_without_predictors():
    table, pred, _ = _known(n=40)
    with pytest.raises(ml.IonTableError, match=r"2 rows have no \(or NaN\) predictors"):
        ml.train_ionic_strength(table, pred.iloc[2:], n_splits=5, n_estimators=5)
    with pytest.warns(UserWarning, match="dropping 2 ion-table rows"):
        m = ml.train_ionic_strength(table, pred.iloc[2:], n_splits=5, n_estimators=5,
                                    drop_unmatched=True)
    assert m.n_rows == 38


def test_to_attrs_is_flat_json(fitted):
    model = fitted[0]
    attrs = model.to_attrs()
    assert json.loads(json.dumps(attrs, allow_nan=False)) == attrs
    assert all(isinstance(v, (str, int, float, bool)) for v in attrs.values())
    assert attrs["ionic_strength_cv_r2"] == model.cv_r2
    assert attrs["ionic_strength_cv_rmse_units"] == "mol L-1"
    assert attrs["ionic_strength_predictors"] == "pr tas aet npp"
    assert attrs["ionic_strength_importance_pr"] == model.feature_importances["pr"]


def test_save_load_round_trip(fitted, tmp_path):
    model, pred, _ = fitted
    store = Store(str(tmp_path))
    uri = ml.save_model(model, store, "models/ionic_strength/v1.joblib")
    assert uri.startswith("file://") and store.exists("models/ionic_strength/v1.joblib.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = ml.load_model(store, "models/ionic_strength/v1.joblib")
    x = pred[list(ml.PREDICTORS)].to_numpy()
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert back.to_attrs() == model.to_attrs()
    meta = json.loads(store.read_text("models/ionic_strength/v1.joblib.json"))
    assert meta["ionic_strength_training_table_sha256"] == model.table_hash


def test_load_warns_on_sklearn_version(fitted, tmp_path):
    import dataclasses

    old = dataclasses.replace(fitted[0], sklearn_version="0.0.1")
    store = Store(str(tmp_path))
    ml.save_model(old, store, "m.joblib")
    with pytest.warns(UserWarning, match="fitted with scikit-learn 0.0.1"):
        ml.load_model(store, "m.joblib")


# ---- predictors and prediction on a hand-made 1° grid -------------------------------------------
def _grid_inputs(years=(2000, 2001), seed=0):
    g = get_grid("1")
    rng = np.random.default_rng(seed)
    ny, shape = len(years), g.shape
    time = pd.date_range(f"{years[0]}-01-01", periods=12 * ny, freq="MS")
    land = np.zeros(shape, "u1")
    land[5:30, 5:55] = 1
    nan = np.where(land > 0, 1.0, np.nan)
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), rng.uniform(0, 150, (12 * ny,) + shape) * nan),
         "tas": (("time", "lat", "lon"), rng.uniform(-10, 30, (12 * ny,) + shape) * nan),
         "aet": (("year", "lat", "lon"), rng.uniform(50, 800, (ny,) + shape) * nan),
         "npp": (("year", "lat", "lon"), rng.uniform(50, 900, (ny,) + shape) * nan),
         "land_mask": (("lat", "lon"), land)},
        coords={"time": time, "year": list(years), "lat": g.lat, "lon": g.lon})
    for v, units in (("pr", "mm month-1"), ("tas", "degC"), ("aet", "mm yr-1"),
                     ("npp", "g m-2 yr-1"), ("land_mask", "1")):
        ds[v].attrs["units"] = units
    return ds


def _days_weighted_mean(monthly):
    """Annual mean of monthly means weighted by days in month (one calendar year)."""
    days = monthly["time"].dt.days_in_month
    return (monthly * days).sum("time", skipna=False) / days.sum()


def test_basin_predictors_area_weighted():
    ds = _grid_inputs()
    mask = _mask()
    ds["pr"][:, 12, 16] = np.nan                     # one cell of basin 2 invalid: left out
    df = ml.basin_predictors(ds, mask)
    assert list(df.columns) == ["basin_id", "year", *ml.PREDICTORS] and len(df) == 6
    area = get_grid("1").cell_area()
    for b, y in ((1, 2000), (2, 2000), (3, 2001)):
        sel = ds.sel(time=str(y))
        fields = {"pr": sel.pr.sum("time", skipna=False).values,
                  "tas": _days_weighted_mean(sel.tas).values,
                  "aet": ds.aet.sel(year=y).values, "npp": ds.npp.sel(year=y).values}
        ok = (mask.values == b) & np.all([np.isfinite(f) for f in fields.values()], axis=0)
        row = df[(df.basin_id == b) & (df.year == y)].iloc[0]
        for v, f in fields.items():
            expected = (f[ok] * area[ok]).sum() / area[ok].sum()
            assert row[v] == pytest.approx(expected, rel=1e-6), (b, y, v)  # float32 drivers


def test_predictors_need_whole_years():
    ds = _grid_inputs().isel(time=slice(0, 18))
    with pytest.raises(ValueError, match=r"not a whole number of years"):
        ml.annual_predictors(ds)


def test_predict_blockwise_matches_model(fitted):
    model = fitted[0]
    ds = _grid_inputs()
    out = ml.predict_ionic_strength(model, ds, chunks={"lat": 10, "lon": 16}, client=None)
    assert out.dtype == np.float32 and out.dims == ("year", "lat", "lon")
    assert out.data.npartitions > 1
    assert out.attrs["units"] == "mol L-1" and out.attrs["ionic_strength_cv_r2"] == model.cv_r2
    v = out.compute(scheduler="sync").values
    fields = ml.annual_predictors(ds)
    x = np.stack([fields[p].values for p in ml.PREDICTORS], axis=-1)
    land = np.broadcast_to(ds.land_mask.values > 0, v.shape)
    assert np.isnan(v[~land]).all() and np.isfinite(v[land]).all()
    # the compiled forest on float32 pixels: exactly scikit-learn's prediction
    np.testing.assert_array_equal(v[land], model.predict(x[land]).astype("f4"))


def _basin_memoriser(n_basins=30, n_years=8, seed=4):
    """I is a per-basin constant unrelated to climate, but each basin's predictors are a fixed
    signature: a forest that has seen other years of a basin recognises it; one that has never
    seen the basin cannot know its I."""
    rng = np.random.default_rng(seed)
    basin_i = rng.uniform(0.002, 0.02, n_basins)
    sig = rng.uniform(0, 1, (n_basins, 4)) * [2000, 30, 800, 900]
    rows, preds = [], []
    unit = np.array([1.0, 0.3, 0.2, 0.05, 2.4, 0.1, 0.1])
    unit_i = karst.ionic_strength(*unit, units="mmol L-1")
    for b in range(n_basins):
        for y in range(2000, 2000 + n_years):
            i = basin_i[b] * np.exp(0.02 * rng.standard_normal())
            rows.append({"basin_id": b + 1, "year": y, **dict(zip(ml.ION_COLUMNS,
                                                                   unit * i / unit_i))})
            preds.append({"basin_id": b + 1, "year": y,
                          **dict(zip(ml.PREDICTORS, sig[b] * (1 + 0.01 * rng.standard_normal(4))))})
    return pd.DataFrame(rows), pd.DataFrame(preds)


def test_basin_cross_validation_holds_whole_basins_out():
    table, pred = _basin_memoriser()
    kf = ml.train_ionic_strength(table, pred, n_splits=5, seed=0, n_estimators=30)
    gb = ml.train_ionic_strength(table, pred, n_splits=5, seed=0, n_estimators=30, cv="basin")
    # shuffled k-fold sees other years of every test basin: it looks excellent
    assert kf.cv_r2 > 0.9 and kf.cv == "kfold"
    # with whole basins held out the same forest has nothing to go on
    assert kf.basin_cv_r2 < 0.5 and kf.basin_cv_folds == 5
    assert gb.cv == "basin" and gb.cv_r2 == gb.basin_cv_r2 == kf.basin_cv_r2
    assert gb.to_attrs()["ionic_strength_cv_scheme"].startswith("GroupKFold")
    with pytest.raises(ml.IonTableError, match="3 basins, fewer than the 5"):
        ml.train_ionic_strength(table[table.basin_id <= 3], pred, n_splits=5, cv="basin",
                                n_estimators=5)
    with pytest.raises(ValueError, match="cv must be one of"):
        ml.train_ionic_strength(table, pred, n_splits=5, cv="loo")


# ---- forest size chosen by cross-validation ---------------------------------------------------
def test_choose_forest_size_takes_where_the_curve_stays_in_the_band():
    curve = ((10, 0.80), (20, 0.838), (30, 0.834), (50, 0.839), (100, 0.840), (300, 0.8405))
    assert ml.choose_forest_size(curve, 0.002) == 50     # 20 is a bump: 30 falls out again
    assert ml.choose_forest_size(curve, 0.01) == 20
    assert ml.choose_forest_size(curve, 0.0) == 300
    assert ml.choose_forest_size(((7, 0.5),), 0.002) == 7


@pytest.fixture(scope="module")
def sized():
    table, pred, _ = _known(n=150, seed=2)
    ladder = (5, 10, 20, 40)
    auto = ml.train_ionic_strength(table, pred, n_splits=5, seed=1, size_ladder=ladder)
    return table, pred, ladder, auto


def test_forest_size_by_cv_equals_a_forest_of_that_size(sized):
    """The CV curve's k-tree scores come from the first k trees of each fold's largest forest;
    they, the leave-basins-out scores and the final forest equal those of training with
    n_estimators=k given."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    table, pred, ladder, auto = sized
    k = auto.rf_params["n_estimators"]
    assert [s for s, _ in auto.n_estimators_cv] == list(ladder) and k in ladder
    assert k == ml.choose_forest_size(auto.n_estimators_cv, ml.RF_SIZE_TOLERANCE)
    assert auto.n_estimators_tolerance == ml.RF_SIZE_TOLERANCE
    assert dict(auto.n_estimators_cv)[k] == auto.cv_r2
    fixed = ml.train_ionic_strength(table, pred, n_splits=5, seed=1, n_estimators=k)
    assert fixed.n_estimators_cv == () and np.isnan(fixed.n_estimators_tolerance)
    assert (auto.cv_r2, auto.cv_rmse, auto.cv_r2_folds) == (fixed.cv_r2, fixed.cv_rmse,
                                                           fixed.cv_r2_folds)
    assert (auto.basin_cv_r2, auto.basin_cv_rmse) == (fixed.basin_cv_r2, fixed.basin_cv_rmse)
    x = pred[list(ml.PREDICTORS)].to_numpy()
    np.testing.assert_array_equal(auto.predict(x), fixed.predict(x))
    # every point of the curve is the pooled out-of-fold R² of a plain sklearn forest of that size
    frame = ml._training_frame(table, pred, 5, False, None)
    xf, y = frame[list(ml.PREDICTORS)].to_numpy(dtype="f8"), ml.ionic_strength_of(frame)
    for size, r2 in auto.n_estimators_cv:
        oof = np.empty_like(y)
        for train, test in KFold(5, shuffle=True, random_state=1).split(xf):
            rf = RandomForestRegressor(n_estimators=size, random_state=1,
                                       **ml.DEFAULT_RF_PARAMS).fit(xf[train], y[train])
            oof[test] = rf.predict(xf[test])
        assert r2_score(y, oof) == r2, size
        if size == k:
            np.testing.assert_array_equal(auto.cv_predictions["predicted"], oof)


def test_forest_size_in_attrs(sized):
    auto = sized[-1]
    attrs = auto.to_attrs()
    assert json.loads(json.dumps(attrs, allow_nan=False)) == attrs
    assert attrs["ionic_strength_rf_n_estimators"] == auto.rf_params["n_estimators"]
    assert attrs["ionic_strength_rf_size_choice"] == "cv"
    assert attrs["ionic_strength_rf_size_tolerance"] == ml.RF_SIZE_TOLERANCE
    pairs = [p.split(":") for p in attrs["ionic_strength_rf_size_cv"].split()]
    assert [int(k) for k, _ in pairs] == [5, 10, 20, 40]
    assert [float(r) for _, r in pairs] == pytest.approx([r for _, r in auto.n_estimators_cv],
                                                         abs=1e-5)


def test_forest_size_basin_scheme_and_bad_ladder():
    table, pred = _basin_memoriser(n_basins=12, n_years=5)
    m = ml.train_ionic_strength(table, pred, n_splits=4, seed=0, cv="basin", size_ladder=(4, 8))
    assert m.cv == "basin" and m.rf_params["n_estimators"] in (4, 8)
    assert dict(m.n_estimators_cv)[m.rf_params["n_estimators"]] == m.cv_r2 == m.basin_cv_r2
    with pytest.raises(ValueError, match="size_ladder must be positive integers"):
        ml.train_ionic_strength(table, pred, n_splits=4, size_ladder=(0, 5))


def test_flat_forest_cached_not_pickled(sized):
    import pickle

    auto = sized[-1]
    flat = auto.flat_forest
    assert auto.flat_forest is flat and flat.n_trees == auto.rf_params["n_estimators"]
    data = pickle.dumps(auto)
    assert b"FlatForest" not in data
    back = pickle.loads(data)
    assert "_flat_forest" not in back.__dict__ and back.to_attrs() == auto.to_attrs()
    x = sized[1][list(ml.PREDICTORS)].to_numpy()
    np.testing.assert_array_equal(back.predict(x), auto.predict(x))


def test_model_pickled_before_forest_size_loads(fitted, tmp_path):
    """A model file written before n_estimators_cv existed (its state lacks the new fields)."""
    model = fitted[0]
    old = ml.IonicStrengthModel.__new__(ml.IonicStrengthModel)
    old.__dict__.update({k: v for k, v in model.__dict__.items()
                         if k not in ("n_estimators_cv", "n_estimators_tolerance", "_flat_forest")})
    store = Store(str(tmp_path))
    store.write_bytes("old.joblib", ml.model_bytes(old))
    back = ml.load_model(store, "old.joblib")
    assert back.n_estimators_cv == () and np.isnan(back.n_estimators_tolerance)
    assert back.to_attrs()["ionic_strength_rf_size_choice"] == "given"
    ds = _grid_inputs()
    v = ml.predict_ionic_strength(back, ds, client=None).compute(scheduler="sync").values
    assert np.isfinite(v[:, 5:30, 5:55]).all()
