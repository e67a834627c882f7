"""System test: ``carbonsink.io.ingest`` of real-format files (GeoTIFF, NetCDF, GeoJSON, CSV; built
by ``tests/integration/_ingest_files.py``, 1° grid) on a real multi-process dask cluster (``dask
scheduler`` + 2 ``dask worker`` processes) into an S3-protocol store (moto), all on 127.0.0.1:

1. ingest into ``s3://`` on the cluster gives exactly the values of a local-store ingest of the same
   manifest (threaded scheduler), and the catalog entry opens;
2. appending a year copies the earlier chunk objects server-side (observed in the S3 server itself:
   CopyObject, never an upload, ETags equal), moves ``latest``; a re-run is "unchanged" and writes
   nothing;
3. sources read from ``s3://`` with the keys only in the environment of the ingesting process (the
   workers have no AWS_* variable): the keys appear in no attr, record, catalog or log; and in a
   long-lived process, sources replaced or added on S3 are seen and read anew;
4. bad input (an undeclared fill value found while writing) leaves the bucket listing identical.

No worker may crash while ingesting (dask would hide it by recomputing elsewhere).

The test process is the S3 client: keys and endpoint come from AWS_* variables (as for the CLI); the
store gets them through :func:`carbonsink.config.load_config`.
"""
from __future__ import annotations

import inspect
import json
import re
import logging
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import _ingest_files as F  # noqa: E402
from _checks import assert_identical_values  # noqa: E402

pytestmark = pytest.mark.system

YEARS = (2000, 2001)
NEXT = 2002              # the appended year
BAD = 2003               # a year whose aet file holds an undeclared fill value on land
VARS = ("npp", "tas", "pr", "rsds", "aet", "soc", "carbonate_fraction", "land_mask")


# --- sources, manifests, stores -----------------------------------------------------------------
def _manifest(years, prefix: str | None = None) -> dict:
    """The _ingest_files manifest with precipitation in one file per year (appendable); sources
    under ``prefix`` (a URL) if given, else relative to the manifest."""
    m = F.manifest(years)
    m["variables"]["pr"]["source"] = "tp_{year}.nc"
    if prefix:
        for spec in list(m["variables"].values()) + list(m["tables"].values()):
            spec["source"] = f"{prefix}/{spec['source']}"
    return m


def _write_manifest(d, years, prefix=None, name="manifest.yaml") -> str:
    return F.write_manifest(str(d), _manifest(years, prefix), name=name)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Source files for 2000–2002 (one file per year for every time series) and for 2003 with an
    undeclared -9999 block on land in aet."""
    from affine import Affine

    d = tmp_path_factory.mktemp("ingest-sources")
    years = (YEARS[0], NEXT)
    F.write_npp(str(d), years)
    F.write_tas(str(d), years)
    F.write_pr(str(d), years, name="tp_{year}.nc")
    F.write_rsds(str(d), years)
    F.write_aet(str(d), years)
    F.write_soc(str(d))
    F.write_lithology(str(d))
    F.write_ions(str(d))
    bad = (BAD, BAD)
    F.write_npp(str(d), bad)
    F.write_tas(str(d), bad)
    F.write_pr(str(d), bad, name="tp_{year}.nc")
    F.write_rsds(str(d), bad)
    lon, lat = F._centres(0.5)
    v = F.aet_kg_m2(*np.meshgrid(lon, lat), BAD).astype("f4")
    v[40:45, 60:65] = -9999.0                    # over land; the file declares no nodata
    F.write_tif(os.path.join(d, f"et_{BAD}.tif"), v, Affine(0.5, 0, 70, 0, -0.5, 55),
                "EPSG:4326", "float32")
    return d


@pytest.fixture(scope="module")
def aws_env(moto_s3):
    """This process as an S3 client: keys and endpoint from AWS_* variables only."""
    import s3fs

    mp = pytest.MonkeyPatch()
    for k, v in moto_s3.env.items():
        mp.setenv(k, v)
    # fsspec caches filesystems by their arguments: an S3FileSystem() made by an earlier test
    # module under another AWS_ENDPOINT_URL would be handed back with that (stopped) server's
    # endpoint; a consumer process with these variables starts without one
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield moto_s3
    finally:
        mp.undo()


def _s3_store(aws_env, prefix: str):
    """A Store on ``s3://<bucket>/<prefix>`` configured as the CLI does (keys from AWS_*)."""
    from carbonsink.config import load_config
    from carbonsink.io.store import Store

    cfg = load_config(store=f"s3://{aws_env.bucket}/{prefix}")
    assert "key" not in cfg.storage_options and "secret" not in cfg.storage_options
    return Store(cfg.store, cfg.resolved_storage_options())


@pytest.fixture(scope="module")
def client(dask_cluster):
    """A distributed client on the cluster, the default for dask (ingest computes on it)."""
    from distributed import Client

    with Client(str(dask_cluster), timeout=30, set_as_default=True) as c:
        yield c


def _threads(*collections):
    import dask

    return dask.compute(*collections, scheduler="threads")


@pytest.fixture(scope="module")
def reference(sources, tmp_path_factory):
    """A local-store ingest of the 2000–2001 manifest with the threaded scheduler (loaded)."""
    from carbonsink.io.ingest import ingest, open_inputs

    root = str(tmp_path_factory.mktemp("ingest-local") / "store")
    result = ingest(_write_manifest(sources, YEARS), root, compute=_threads)
    assert result.action == "created", result.message
    return open_inputs(root).load(scheduler="threads")


def _work(client) -> dict:
    return client.run(lambda dask_worker: dask_worker.state.transition_counter)


def _tasks_since(client, since: float) -> dict:
    def compute_log(dask_worker, since):
        from dask.utils import key_split

        return sorted({key_split(e[0]) for e in dask_worker.state.log
                       if len(e) > 2 and e[1] == "compute-task" and e[-1] >= since})
    return client.run(compute_log, since=since)


@pytest.fixture(scope="module")
def s3_created(sources, aws_env, client):
    """The 2000–2001 manifest (local sources) ingested into s3://<bucket>/ingest, on the
    cluster."""
    from carbonsink.io.ingest import ingest

    store = _s3_store(aws_env, "ingest")
    before, t0 = _work(client), time.time()
    result = ingest(_write_manifest(sources, YEARS), store)
    return {"store": store, "result": result, "before": before, "after": _work(client),
            "ran": _tasks_since(client, t0)}


def _listing(s3, prefix: str = "") -> dict:
    """{object key: (size, ETag)} of every object under ``bucket/prefix``."""
    fs = s3.fs()
    root = f"{s3.bucket}/{prefix}".rstrip("/")
    if not fs.exists(root):
        return {}
    return {k: (int(v["size"]), v.get("ETag")) for k, v in fs.find(root, detail=True).items()}


def assert_no_worker_died(dask_cluster):
    """No worker process crashed (e.g. SIGSEGV) and was restarted by its nanny while ingesting:
    dask would recompute the lost tasks elsewhere and hide it."""
    logs = dask_cluster.logs()
    for sign in ("killed by signal", "Restarting worker", "Worker process died"):
        assert sign not in logs, f"a dask worker died ({sign!r}):\n{logs[-4000:]}"




class _ServerWrites:
    """What the S3 server stored, by request kind: uploads (PutObject: data sent by a client) and
    server-side copies (CopyObject); recorded in moto's backend (the server runs in this
    process)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.uploads: list[tuple[str, int]] = []     # (bucket/key, bytes)
        self.copies: list[tuple[str, str]] = []      # (source bucket/key, destination bucket/key)


@pytest.fixture
def server_writes(moto_s3, monkeypatch):
    from moto.s3.models import S3Backend

    rec = _ServerWrites()
    put, copy = S3Backend.put_object, S3Backend.copy_object
    put_sig, copy_sig = inspect.signature(put), inspect.signature(copy)
    state = threading.local()

    def put_object(self, *args, **kwargs):
        a = put_sig.bind(self, *args, **kwargs).arguments
        if not getattr(state, "copying", False):
            with rec.lock:
                rec.uploads.append((f"{a['bucket_name']}/{a['key_name']}", len(a["value"])))
        return put(self, *args, **kwargs)

    def copy_object(self, *args, **kwargs):
        a = copy_sig.bind(self, *args, **kwargs).arguments
        src = a["src_key"]
        with rec.lock:
            rec.copies.append((f"{src.bucket_name}/{src.name}",
                               f"{a['dest_bucket_name']}/{a['dest_key_name']}"))
        state.copying = True
        try:
            return copy(self, *args, **kwargs)
        finally:
            state.copying = False

    monkeypatch.setattr(S3Backend, "put_object", put_object)
    monkeypatch.setattr(S3Backend, "copy_object", copy_object)
    return rec


# --- 1. ingest into S3 on the cluster ----------------------------------------------------------
def test_ingest_into_s3_on_the_cluster_equals_a_local_ingest(s3_created, reference, aws_env,
                                                             dask_cluster):
    from carbonsink.catalog import open_catalog
    from carbonsink.io.ingest import open_inputs

    store, result = s3_created["store"], s3_created["result"]
    assert result.action == "created", result.message
    assert result.uri == f"s3://{aws_env.bucket}/ingest/inputs/observed/{result.version}.zarr"
    ds = open_inputs(store).load()
    assert_identical_values(ds, reference)
    for var in VARS:
        assert ds[var].attrs == reference[var].attrs, var
    # the work (the zarr writes included) ran on both external workers
    before, after, ran = s3_created["before"], s3_created["after"], s3_created["ran"]
    assert set(after) == set(before) and len(after) == 2
    for addr in after:
        assert after[addr] > before[addr] and ran[addr], f"worker {addr} did no work"
    assert any("store" in p for p in set().union(*ran.values())), ran
    # the catalog entry points at the version and opens through Intake
    url = store.uri("catalog.yaml")
    sources = yaml.safe_load(store.read_text("catalog.yaml"))["sources"]
    assert sources["observed"]["metadata"]["version"] == result.version
    assert "observed_river_chemistry" in sources
    # (in this process: the catalog carries no keys, and the workers have none in their
    # environment, so a catalog consumer computes where its AWS_* variables are)
    cat = open_catalog(url)
    assert_identical_values(cat["observed"].to_dask().load(scheduler="threads"), reference)
    assert not [o for o in aws_env.objects() if "/_staging/" in o], "staging left behind"
    assert dask_cluster.procs.check_alive() is None
    assert_no_worker_died(dask_cluster)


# --- 2. append a year: server-side copies, latest moves, re-run unchanged ----------------------
def test_append_copies_earlier_chunks_server_side(s3_created, sources, aws_env, client,
                                                  server_writes, dask_cluster):
    from carbonsink.catalog import open_catalog
    from carbonsink.io.ingest import ingest, open_inputs

    store, first = s3_created["store"], s3_created["result"]
    v1 = first.version
    base = f"{aws_env.bucket}/ingest/inputs/observed"
    old = _listing(aws_env, f"ingest/inputs/observed/{v1}.zarr")
    old_chunks = {k: v for k, v in old.items()       # Zarr v2 chunk keys: <var>/<i>.<j>[.<k>]
                  if any(re.search(rf"/{v1}\.zarr/{var}/\d+(\.\d+)*$", k) for var in VARS)}
    assert len(old_chunks) >= 8, sorted(old)
    path = _write_manifest(sources, (YEARS[0], NEXT), name="manifest-2002.yaml")

    result = ingest(path, store)
    assert result.action == "appended" and result.new_years == [NEXT], result.message
    assert f"wrote {NEXT}" in result.message
    v2 = result.version
    assert result.reused_chunks == len(old_chunks)
    assert store.latest("inputs", "observed") == v2 != v1

    # the published earlier version is untouched
    assert _listing(aws_env, f"ingest/inputs/observed/{v1}.zarr") == old
    # every earlier chunk object is in the new version with the same ETag and size ...
    new = _listing(aws_env, f"ingest/inputs/observed/{v2}.zarr")
    for k, (size, etag) in old_chunks.items():
        assert new.get(k.replace(f"/{v1}.zarr/", f"/{v2}.zarr/")) == (size, etag), k
    # ... put there by server-side copies only: staged from the earlier version by CopyObject,
    # never uploaded (no chunk data of earlier years went through the client or a worker)
    staged = next(re.match(rf".*/_staging/w-[0-9a-f]+/inputs/observed/{v2}\.zarr/", dst).group(0)
                  for _, dst in server_writes.copies if "/_staging/" in dst)    # this writer's
    rel = {k.split(f"/{v1}.zarr/", 1)[1] for k in old_chunks}
    copied = {dst[len(staged):] for src, dst in server_writes.copies
              if dst.startswith(staged) and src.startswith(f"{base}/{v1}.zarr/")}
    assert copied == rel
    uploaded = {k[len(staged):] for k, _ in server_writes.uploads if k.startswith(staged)}
    assert not uploaded & rel, sorted(uploaded & rel)
    # the uploads are metadata, coordinates and the new year's chunks only (chunk index 2 along
    # time/year for the time series; the static layers are not written again)
    for k in uploaded:
        var, _, key = k.partition("/")
        if var in VARS and re.fullmatch(r"\d+(\.\d+)*", key):
            assert var in ("npp", "tas", "pr", "rsds", "aet") and key.split(".")[0] == "2", k
    assert {f"{v}/2.0.0" for v in ("npp", "tas", "pr", "rsds", "aet")} <= uploaded
    # nothing else was uploaded: the version is moved into place by server-side copies too; the
    # small objects are its record, table and manifest, the release and the catalog (plus the
    # claim on the version id and the release lock, both gone again)
    root = f"{aws_env.bucket}/ingest"
    others = {k for k, _ in server_writes.uploads if not k.startswith(staged)
              and not k.endswith((f"/{v2}.claim", "/_locks/releases.lock"))}
    releases = {k for k in others if k.startswith(f"{root}/releases/")}
    assert f"{root}/releases/current.json" in releases and len(releases) == 2, releases
    assert others - releases == {f"{base}/{v2}.json", f"{base}/{v2}.river_chemistry.csv",
                                 f"{base}/{v2}.manifest.json", f"{root}/catalog.yaml"}, others
    assert not [o for o in aws_env.objects() if o.endswith((".claim", ".lock"))]
    moved = {dst for _, dst in server_writes.copies if dst.startswith(f"{base}/{v2}.zarr/")}
    assert moved == set(new)
    assert len(new) == len(old) + 5, (len(new), len(old))   # + one chunk per time series
    assert not [o for o in aws_env.objects() if "/_staging/" in o], "staging left behind"

    # the new version: earlier years as before, the new year's values right
    ds = open_inputs(store).load()
    prev = store.open("inputs", "observed", v1).load()
    assert ds.sizes["year"] == 3 and ds.sizes["time"] == 36
    for var in ("npp", "rsds", "aet"):
        np.testing.assert_array_equal(ds[var].values[:2], prev[var].values, err_msg=var)
    for var in ("tas", "pr"):
        np.testing.assert_array_equal(ds[var].values[:24], prev[var].values, err_msg=var)
    land = ds.land_mask.values > 0
    np.testing.assert_allclose(ds.npp.values[2][land], F.NPP_RAW[NEXT] * 0.1, rtol=1e-6)
    assert np.isnan(ds.npp.values[2][~land]).all()
    lon, lat = np.meshgrid(ds.lon.values, ds.lat.values)
    exp = np.stack([F.tas_k(lon, lat, NEXT, mo) - 273.15 for mo in range(1, 13)])
    np.testing.assert_allclose(ds.tas.values[24:][:, land], exp[:, land], rtol=1e-6)
    # latest moved, and so did the catalog
    assert yaml.safe_load(store.read_text("catalog.yaml"))["sources"]["observed"][
        "metadata"]["version"] == v2
    assert open_catalog(store.uri("catalog.yaml"))["observed"].to_dask().sizes["year"] == 3

    # the same manifest again: nothing to do, nothing written
    everything = _listing(aws_env)
    n_up, n_copy = len(server_writes.uploads), len(server_writes.copies)
    again = ingest(path, store)
    assert again.action == "unchanged" and again.version == v2, again.message
    assert "nothing to do" in again.message
    assert (len(server_writes.uploads), len(server_writes.copies)) == (n_up, n_copy)
    assert _listing(aws_env) == everything
    assert_no_worker_died(dask_cluster)


# --- 3. sources on S3, keys from the environment only ------------------------------------------
def _upload_sources(aws_env, sources, prefix: str):
    """The 2000–2002 source files to ``s3://<bucket>/<prefix>/``."""
    fs = aws_env.fs()
    for name in sorted(os.listdir(sources)):
        if not name.startswith(("manifest", f"MOD17A3HGF_NPP_{BAD}", f"cmfd_temp_{BAD}",
                                f"tp_{BAD}", f"era5land_ssrd_{BAD}", f"et_{BAD}")):
            fs.put_file(os.path.join(sources, name), f"{aws_env.bucket}/{prefix}/{name}")
    return f"s3://{aws_env.bucket}/{prefix}"


def test_sources_on_s3_with_keys_from_the_environment_only(sources, reference, aws_env, client,
                                                           dask_cluster, caplog, capfd,
                                                           tmp_path):
    from carbonsink.catalog import open_catalog
    from carbonsink.io.ingest import ingest, open_inputs

    secrets = (aws_env["key"], aws_env["secret"])
    fs = aws_env.fs()
    prefix = _upload_sources(aws_env, sources, "raw")
    # the manifest names s3:// sources and no storage options: the endpoint and the keys come
    # from AWS_* variables of this process
    path = _write_manifest(tmp_path, YEARS, prefix=prefix)
    text = Path(path).read_text()
    assert prefix in text and not any(s in text for s in secrets)

    store = _s3_store(aws_env, "from-s3")
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="carbonsink")
    t0 = time.time()
    result = ingest(path, store, progress=True)
    assert result.action == "created", result.message
    # the workers (no AWS_* environment) read the source windows themselves ("original-*": the
    # lazily opened source arrays, the raw-extremes read included), from the local copies the
    # ingesting process fetched: no key travels in the task graph
    ran = set().union(*_tasks_since(client, t0).values())
    assert any(p.startswith("original-rawstats") for p in ran), ran
    ds = open_inputs(store).load()
    assert_identical_values(ds, reference)
    rec = store.record("inputs", "observed")
    npp = rec["ingest"]["sources"]["npp"]
    assert [f["path"] for f in npp] == [f"{prefix}/MOD17A3HGF_NPP_{y}.tif" for y in (2000, 2001)]
    assert all(f["digest"].startswith("etag:") for f in npp)
    assert ds.tas.attrs["source"] == f"{prefix}/cmfd_temp_{{year}}.nc"
    cat = open_catalog(store.uri("catalog.yaml"))
    assert_identical_values(cat["observed"].to_dask().load(scheduler="threads"), reference)

    # the keys are nowhere: attrs, the version record and the latest pointer, the catalog, the
    # zarr metadata, any object of the store, this process's logs and output, the cluster's logs
    out, err = capfd.readouterr()
    texts = {
        "dataset attrs": json.dumps(ds.attrs, default=str),
        "variable attrs": json.dumps({v: ds[v].attrs for v in ds.variables}, default=str),
        "result message": result.message,
        "captured logs": caplog.text,
        "stdout": out, "stderr": err,
        "scheduler/worker logs": dask_cluster.logs(),
    }
    objects = sorted(aws_env.objects("from-s3"))
    assert any(o.endswith("/releases/current.json") for o in objects)
    assert any(o.endswith("catalog.yaml") for o in objects)
    for o in objects:
        if o.endswith((".json", ".yaml", ".csv")):
            texts[o] = fs.cat_file(o).decode()
    blob = b"".join(fs.cat_file(o) for o in objects)
    for s in secrets:
        for where, text in texts.items():
            assert s not in text, f"secret {s[:6]}… leaked into {where}"
        assert s.encode() not in blob
    assert not [o for o in objects if "/_staging/" in o], "staging left behind"
    assert_no_worker_died(dask_cluster)


def test_sources_changed_on_s3_are_read_anew_in_the_same_process(sources, reference, aws_env,
                                                                 client, dask_cluster, tmp_path):
    """A long-lived process (a flow worker, a notebook) ingests; then a GeoTIFF and a NetCDF source
    are replaced on S3 and a new year is uploaded, and it ingests again: the new year's file is
    found and the new fingerprints are seen (no stale directory listing), the new contents are read
    (no stale local copy)."""
    from carbonsink.io.ingest import ingest, open_inputs

    prefix = _upload_sources(aws_env, sources, "raw-changing")
    fs = aws_env.fs()
    for y in YEARS:      # the MODIS files in tile folders, found by a glob (directories listed)
        fs.put_file(os.path.join(sources, f"MOD17A3HGF_NPP_{y}.tif"),
                    f"{aws_env.bucket}/raw-changing/modis/h25v05/MOD17A3HGF_NPP_{y}.tif")
    m = _manifest(YEARS, prefix=prefix)
    m["variables"]["npp"]["source"] = f"{prefix}/modis/*/MOD17A3HGF_NPP_{{year}}.tif"
    store = _s3_store(aws_env, "changing")
    first = ingest(F.write_manifest(str(tmp_path), m), store)
    assert first.action == "created", first.message
    assert_identical_values(open_inputs(store).load(), reference)

    d = tmp_path / "changed"
    d.mkdir()
    transform, shape = F.sinusoidal_grid()
    F.write_tif(str(d / "MOD17A3HGF_NPP_2001.tif"), np.full(shape, 6100, "i2"), transform, F.SINU,
                "int16", nodata=32767, scale=1e-4, units="kg C m-2 yr-1")
    F.write_tas(str(d), (2001, 2001), field=lambda lon, lat, y, mo: F.tas_k(lon, lat, y, mo) + 1.5)
    changed = {"MOD17A3HGF_NPP_2001.tif": "raw-changing/modis/h25v05",
               "cmfd_temp_2001.nc": "raw-changing"}
    etags = {}
    for name, where in changed.items():
        fs.put_file(str(d / name), f"{aws_env.bucket}/{where}/{name}")
        etags[name] = fs.info(f"{aws_env.bucket}/{where}/{name}")["ETag"].strip('"')
    fs.put_file(os.path.join(sources, f"MOD17A3HGF_NPP_{NEXT}.tif"),
                f"{aws_env.bucket}/raw-changing/modis/h25v05/MOD17A3HGF_NPP_{NEXT}.tif")
    m["years"] = f"{YEARS[0]}-{NEXT}"
    path = F.write_manifest(str(tmp_path), m)

    second = ingest(path, store)
    assert second.action == "rewritten", second.message
    assert "the source of 2001 changed" in second.reason
    rec = store.record("inputs", "observed")
    digests = {os.path.basename(f["path"]): f["digest"] for var in ("npp", "tas")
               for f in rec["ingest"]["sources"][var]}
    for name, etag in etags.items():
        assert digests[name] == f"etag:{etag}", name
    ds = open_inputs(store).load()
    land = ds.land_mask.values > 0
    np.testing.assert_array_equal(ds.npp.values[0], reference.npp.values[0])
    np.testing.assert_allclose(ds.npp.values[1][land], 610.0, rtol=1e-6)
    np.testing.assert_allclose(ds.npp.values[2][land], F.NPP_RAW[NEXT] * 0.1, rtol=1e-6)
    lon, lat = np.meshgrid(ds.lon.values, ds.lat.values)
    exp = np.stack([F.tas_k(lon, lat, 2001, mo) + 1.5 - 273.15 for mo in range(1, 13)])
    np.testing.assert_array_equal(ds.tas.values[:12], reference.tas.values[:12])
    np.testing.assert_allclose(ds.tas.values[12:24][:, land], exp[:, land], rtol=1e-6)
    assert ingest(path, store).action == "unchanged"
    assert_no_worker_died(dask_cluster)


# --- 4. bad input on S3 leaves the bucket as it was --------------------------------------------
@pytest.mark.parametrize("case", ["append", "create"])
def test_bad_input_leaves_the_bucket_listing_identical(case, s3_created, sources, aws_env, client,
                                                       server_writes, dask_cluster):
    from carbonsink.io.ingest import ingest
    from carbonsink.io.validate import InputError

    if case == "append":      # onto the published store: the failure comes after chunks were copied
        store = s3_created["store"]
        assert store.latest("inputs", "observed") is not None
    else:                     # a new store prefix: nothing of it may become visible
        store = _s3_store(aws_env, "bad-create")
    years = (YEARS[0], BAD) if case == "append" else (BAD, BAD)
    path = _write_manifest(sources, years, name=f"manifest-bad-{case}.yaml")
    before = _listing(aws_env)
    with pytest.raises(InputError, match=r"raw value -9999 .*undeclared fill value") as e:
        ingest(path, store)
    assert e.value.variable == "aet" and e.value.source.endswith(f"et_{BAD}.tif")
    assert _listing(aws_env) == before
    assert not [o for o in aws_env.objects() if "/_staging/" in o], "staging left behind"
    # the failure came after data was staged (found in the same pass as the write), so the
    # staged objects were there and were removed
    written = [k for k, _ in server_writes.uploads] + [k for _, k in server_writes.copies]
    staged = [k for k in written if "/_staging/" in k]
    assert any(re.search(r"/aet/\d+\.\d+\.\d+$", k) for k in staged), staged
    assert_no_worker_died(dask_cluster)
