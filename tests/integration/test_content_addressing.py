"""Content-addressed versions: deterministic ids, reuse of complete versions, resume after a failure,
``latest`` as the pointer (not the sort order), and the transient-error classification the flows'
retry policy uses."""
import json

import numpy as np
import pytest
import xarray as xr

from carbonsink.config import ConfigError, load_config
from carbonsink.io.store import Published, Store, StoreError, is_transient
from carbonsink.io.validate import InputError
from carbonsink.pipeline import _step, content_version

pytestmark = pytest.mark.integration


def _ds(value=1.0):
    return xr.Dataset({"a": (("y", "x"), np.full((4, 6), value, "f4"), {"units": "1"})}).chunk(
        {"y": 2, "x": 3})


def _ref(kind, name, version):
    return Published(kind, name, version, "", {})


def test_content_version_is_deterministic_and_changes_with_what_determines_the_result():
    cfg = load_config(env={}, store="/tmp/a", grid="1", years="2000-2003")
    inputs = {"inputs": _ref("inputs", "synthetic", "c-1"), "regions": _ref("inputs", "regions",
                                                                           "c-2")}
    v = content_version(cfg, "products", "nep", {"rh_model": "pei"}, inputs)
    assert v.startswith("c-") and len(v) == 18
    # where results go and what computes them do not count
    same = load_config(env={}, store="s3://elsewhere/x", grid="1", years="2000-2003",
                       **{"cluster.scheduler": "tcp://127.0.0.1:1", "cluster.n_workers": 5})
    assert content_version(same, "products", "nep", {"rh_model": "pei"}, dict(inputs)) == v
    # the configuration, the parameters, the input versions and the dataset do
    other = load_config(env={}, store="/tmp/a", grid="1", years="2000-2004")
    assert content_version(other, "products", "nep", {"rh_model": "pei"}, inputs) != v
    assert content_version(cfg, "products", "nep", {"rh_model": "soil_tps"}, inputs) != v
    changed = {**inputs, "inputs": _ref("inputs", "synthetic", "c-3")}
    assert content_version(cfg, "products", "nep", {"rh_model": "pei"}, changed) != v
    assert content_version(cfg, "products", "nep_pei", {"rh_model": "pei"}, inputs) != v


def test_content_version_changes_with_the_code_version(monkeypatch):
    import carbonsink.pipeline as pipeline

    cfg = load_config(env={}, store="/tmp/a", grid="1")
    v = content_version(cfg, "products", "sink")
    monkeypatch.setattr(pipeline, "__version__", "99.0")
    pipeline.code_fingerprint.cache_clear()
    try:
        assert content_version(cfg, "products", "sink") != v
    finally:
        monkeypatch.undo()
        pipeline.code_fingerprint.cache_clear()


def test_code_fingerprint_follows_the_computing_source(tmp_path, monkeypatch):
    """An edited kernel under an unchanged version number gives new versions; presentation code
    (the CLI) does not count."""
    import pathlib
    import shutil

    import carbonsink.pipeline as pipeline

    cfg = load_config(env={}, store="/tmp/a", grid="1")
    v = content_version(cfg, "products", "sink")
    assert pipeline.code_fingerprint().startswith(pipeline.__version__ + "+")
    src = pathlib.Path(pipeline.__file__).parent
    copy = tmp_path / "carbonsink"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pipeline, "__file__", str(copy / "pipeline.py"))
    pipeline.code_fingerprint.cache_clear()
    try:
        assert content_version(cfg, "products", "sink") == v          # same source, same id
        (copy / "cli.py").write_text((copy / "cli.py").read_text() + "\n# presentation\n")
        pipeline.code_fingerprint.cache_clear()
        assert content_version(cfg, "products", "sink") == v
        k = copy / "kernels" / "respiration.py"
        k.write_text(k.read_text() + "\n# a kernel edit\n")
        pipeline.code_fingerprint.cache_clear()
        assert content_version(cfg, "products", "sink") != v
    finally:
        monkeypatch.undo()
        pipeline.code_fingerprint.cache_clear()


def test_step_reuses_a_complete_version_and_recomputes_an_incomplete_one(tmp_path):
    cfg = load_config(env={}, store=str(tmp_path / "s"), grid="1")
    store = Store(cfg.store)
    calls = []

    def build(version, extra):
        calls.append(version)
        return store.publish(_ds(), "products", "p", version=version, record=extra)
    p1 = _step(store, cfg, "products", "p", params={}, inputs={}, build=build)
    assert not p1.reused and p1.version.startswith("c-") and len(calls) == 1
    assert p1.record["content_address"]["dataset"] == "products/p"
    p2 = _step(store, cfg, "products", "p", params={}, inputs={}, build=build)
    assert p2.reused and p2.version == p1.version and len(calls) == 1      # skipped
    assert store.versions("products", "p") == [p1.version]

    # S3 goes away after the data was moved into place, before its record: the version stays
    # invisible (no record, no pointer) and the next run computes and publishes it again
    real = store.write_text

    def no_record(rel, text):
        if rel.endswith(".json") and "/q/c-" in f"/{rel}":
            raise OSError("connection reset by the object store")
        return real(rel, text)
    store.write_text = no_record
    with pytest.raises(OSError):
        _step(store, cfg, "products", "q", params={}, inputs={},
              build=lambda v, e: store.publish(_ds(2), "products", "q", version=v))
    store.write_text = real
    assert store.versions("products", "q") == [] and store.latest("products", "q") is None
    assert list((tmp_path / "s" / "products" / "q").glob("c-*.zarr"))      # moved, not visible
    q = _step(store, cfg, "products", "q", params={}, inputs={},
              build=lambda v, e: store.publish(_ds(2), "products", "q", version=v))
    assert not q.reused and store.latest("products", "q") == q.version
    assert float(store.open("products", "q").a.mean()) == 2.0
    assert not (tmp_path / "s" / "_staging").exists()


@pytest.mark.parametrize("url", ["local", "memory://carbonsink-content-addressing"])
def test_latest_is_the_pointer_and_versions_are_in_publication_order(tmp_path, url):
    store = Store(str(tmp_path / "s") if url == "local" else url)
    # content-addressed ids do not sort by time
    a = store.publish(_ds(1), "products", "p", version="c-ffff000000000000")
    b = store.publish(_ds(2), "products", "p", version="c-0000000000000000")
    assert store.versions("products", "p") == [a.version, b.version]     # oldest first
    assert store.latest("products", "p") == b.version
    # publishing a version that is already complete returns it (another writer's, say) as reused
    same = store.publish(_ds(3), "products", "p", version=a.version)
    assert same.reused and float(store.open("products", "p", a.version).a.mean()) == 1.0
    again = store.reuse("products", "p", a.version)                       # back to config A
    assert again.reused and again.version == a.version
    assert store.latest("products", "p") == a.version
    assert float(store.open("products", "p").a.mean()) == 1.0
    assert store.versions("products", "p") == [a.version, b.version]     # both kept
    assert store.reuse("products", "p", "c-0123456789abcdef") is None
    with pytest.raises(StoreError, match="no complete version"):
        store.set_latest("products", "p", "c-0123456789abcdef")
    rec = json.loads(store.read_text(f"products/p/{a.version}.json"))
    assert "T" in rec["created"] and "." in rec["created"]              # µs: orders quick publishes


def test_transient_errors_are_retried_bad_input_and_config_are_not():
    from botocore.exceptions import EndpointConnectionError

    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ConnectionResetError("reset"))
    assert is_transient(TimeoutError())
    assert is_transient(OSError("broken pipe"))
    assert is_transient(StoreError("cannot reach object store", transient=True))
    try:                                           # wrapped: the chain decides
        try:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        except Exception as e:
            raise RuntimeError("zarr write failed") from e
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(InputError("pr", "a file", "negative precipitation"))
    assert not is_transient(ConfigError("bad years"))
    assert not is_transient(StoreError("bucket does not exist"))
    assert not is_transient(FileNotFoundError("products/nep/latest.json"))
    assert not is_transient(PermissionError("denied"))
    assert not is_transient(RuntimeError("a bug"))
