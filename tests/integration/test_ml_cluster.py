"""The ionic-strength random forest end to end on synthetic 1° China, 2000–2004 (SCIENCE.md §3):
synthetic basins and ion table → basin predictors (flox) → 10-fold CV training → block-wise
prediction on a real 2-process LocalCluster with the compiled forest (scikit-learn's predictions
exactly), equal to the in-process result, without gathering."""
from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest

from carbonsink import ml
from carbonsink.synthetic import make_basins, make_inputs, make_ion_table
from carbonsink.zonal import cell_area_da

pytestmark = pytest.mark.integration

YEARS = (2000, 2004)
TILE = {"lat": 16, "lon": 16}     # 3 × 4 spatial blocks at 1°: block-wise work is visible


@pytest.fixture(scope="module")
def lazy_inputs():
    return make_inputs("1", YEARS).chunk(TILE)


@pytest.fixture(scope="module")
def basins():
    return make_basins("1", n_basins=40, seed=0)


@pytest.fixture(scope="module")
def table(lazy_inputs, basins):
    return make_ion_table(lazy_inputs, basins, seed=0)


@pytest.fixture(scope="module")
def predictors(lazy_inputs, basins):
    return ml.basin_predictors(lazy_inputs, basins)


@pytest.fixture(scope="module")
def model(table, predictors):
    return ml.train_ionic_strength(table, predictors, n_splits=10, seed=0)


def test_basins(basins):
    assert basins.dtype == np.int32 and basins.dims == ("lat", "lon")
    ids, counts = np.unique(basins.values, return_counts=True)
    assert list(ids) == list(range(41)) and counts[1:].min() >= 5
    assert basins.attrs["flag_values"] == list(range(1, 41))
    assert basins.attrs["region_names"][0] == "basin_01"
    # deterministic, and the same sites on a finer grid
    again = make_basins("1", n_basins=40, seed=0)
    assert np.array_equal(again.values, basins.values)
    assert make_basins("0.5").attrs["site_lon"] == basins.attrs["site_lon"]
    assert not np.array_equal(make_basins("1", seed=1).values, basins.values)


def test_ion_table(table, basins):
    clean = ml.validate_ion_table(table, basins, source="synthetic")
    assert len(clean) == len(table)
    assert 180 <= len(table) < 200                  # a few basin-years dropped as gaps
    assert (table[list(ml.ION_COLUMNS)] > 0).all().all()
    i = ml.ionic_strength_of(table)
    assert 0.001 < i.min() and np.percentile(i, 95) < 0.07 and i.max() < 0.15
    assert "log10 I" in table.attrs["generating_relation"]


def test_ion_table_follows_planted_relation(table, predictors, lazy_inputs, basins):
    from carbonsink import synthetic as syn

    rows = table.merge(predictors, on=["basin_id", "year"])
    resid = np.log10(ml.ionic_strength_of(rows)) - syn.ionic_strength_relation(
        rows.pr, rows.tas, rows.aet, rows.npp)
    sigma = np.hypot(syn.ION_SIGMA_BASIN, syn.ION_SIGMA_YEAR)
    assert abs(resid.mean()) < 0.05 and 0.7 * sigma < resid.std() < 1.3 * sigma
    # wetter basins are more dilute
    wet, dry = rows.pr > rows.pr.quantile(0.75), rows.pr < rows.pr.quantile(0.25)
    assert ml.ionic_strength_of(rows[wet]).mean() < 0.5 * ml.ionic_strength_of(rows[dry]).mean()
    again = make_ion_table(lazy_inputs, basins, seed=0, predictors=predictors)
    assert again.equals(table)


def test_basin_predictors_match_numpy(predictors, inputs_1deg, basins):
    assert len(predictors) == 40 * 5 and not predictors.isna().any().any()
    b, y = 7, 2002
    area = cell_area_da(inputs_1deg).values
    sel = inputs_1deg.sel(time=str(y))
    fields = {"pr": sel.pr.sum("time", skipna=False).values,
              "tas": ((sel.tas * sel.time.dt.days_in_month).sum("time", skipna=False)
                      / sel.time.dt.days_in_month.sum()).values,
              "aet": inputs_1deg.aet.sel(year=y).values, "npp": inputs_1deg.npp.sel(year=y).values}
    cells = (basins.values == b) & np.all([np.isfinite(f) for f in fields.values()], axis=0)
    row = predictors[(predictors.basin_id == b) & (predictors.year == y)].iloc[0]
    for v, f in fields.items():
        expected = (f[cells] * area[cells]).sum() / area[cells].sum()
        assert row[v] == pytest.approx(expected, rel=1e-5), v


def test_training_scores(model, table):
    assert 0.6 <= model.cv_r2 <= 0.95
    assert 0.0 < model.cv_rmse < 0.02
    assert model.n_rows == len(table)
    assert sum(model.feature_importances.values()) == pytest.approx(1.0)
    # the forest size was chosen by the 10-fold CV, on the ladder
    sizes = [k for k, _ in model.n_estimators_cv]
    assert sizes == list(ml.RF_SIZE_LADDER) and model.rf_params["n_estimators"] in sizes
    assert dict(model.n_estimators_cv)[model.rf_params["n_estimators"]] == model.cv_r2
    print(f"\n1° CV R² {model.cv_r2:.3f}, RMSE {model.cv_rmse:.4f} mol L-1, importances "
          f"{ {k: round(v, 3) for k, v in model.feature_importances.items()} }, "
          f"{model.rf_params['n_estimators']} trees; CV R² by size "
          f"{ {k: round(r2, 4) for k, r2 in model.n_estimators_cv} }")


def test_predict_on_cluster_equals_in_process(model, lazy_inputs, predictors, basins):
    from distributed import Client, LocalCluster, wait

    # in process first (no client active): the flattened forest is one dask.delayed key of the
    # graph
    local = ml.predict_ionic_strength(model, lazy_inputs)
    assert local.data.npartitions == 12
    forest_bytes = len(pickle.dumps(model.flat_forest))
    graph = dict(local.__dask_graph__())
    assert forest_bytes > 300_000                              # a forest is big ...
    assert len(cloudpickle.dumps(graph)) < forest_bytes + 200_000  # ... and in the graph once
    assert forest_bytes < 0.5 * len(pickle.dumps(model))      # and smaller than the model
    expected = local.compute(scheduler="threads").values
    # the compiled forest gives scikit-learn's predictions exactly
    fields = ml.annual_predictors(lazy_inputs).compute()
    x = np.stack([fields[p].values for p in ml.PREDICTORS], axis=-1)
    land = np.broadcast_to(lazy_inputs.land_mask.values > 0, expected.shape)
    np.testing.assert_array_equal(expected[land], model.predict(x[land]).astype("f4"))

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        # predictors reduced on the workers equal the in-process ones
        on_cluster = ml.basin_predictors(lazy_inputs, basins)
        np.testing.assert_allclose(on_cluster[list(ml.PREDICTORS)].to_numpy(),
                                   predictors[list(ml.PREDICTORS)].to_numpy(), rtol=1e-6)

        pred = ml.predict_ionic_strength(model, lazy_inputs)
        # the flattened forest was scattered to both workers, not put in the graph
        assert len(cloudpickle.dumps(dict(pred.__dask_graph__()))) < 100_000
        holders = client.who_has()
        model_keys = [k for k in holders if str(k).startswith("FlatForest-")]
        assert len(model_keys) == 1 and len(holders[model_keys[0]]) == 2

        # persisted: the result stays on the workers as 12 chunk-sized pieces
        kept = pred.persist()
        wait(kept)
        keys = {str(k) for k in _flat_keys(kept.__dask_keys__())}
        nbytes = {str(k): v for k, v in client.nbytes(summary=False).items()}
        sizes = [nbytes[k] for k in keys]
        block = 5 * 16 * 16 * 4
        assert len(sizes) == 12 and max(sizes) <= block + 1024
        got = kept.compute().values

    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    land = np.broadcast_to(lazy_inputs.land_mask.values > 0, got.shape)
    assert np.isnan(got[~land]).all() and np.isfinite(got[land]).all()
    assert 0.001 < np.nanmin(got) and np.nanmax(got) < 0.15
    assert pred.attrs["units"] == "mol L-1"
    assert pred.attrs["ionic_strength_cv_r2"] == model.cv_r2


def _flat_keys(keys):
    if isinstance(keys, list):
        for k in keys:
            yield from _flat_keys(k)
    else:
        yield keys
