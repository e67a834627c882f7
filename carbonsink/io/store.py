"""The one place that touches storage: Zarr datasets and small files on file://, s3://, memory://.

Layout under the store root::

    <kind>/<name>/<version>.zarr     published data (kind: inputs | products)
    <kind>/<name>/<version>.<ext>    attachments of a version (e.g. totals.csv)
    <kind>/<name>/<version>.json     version record; its presence is what makes a version complete
    <kind>/<name>/latest.json        pointer to the newest complete version
    _staging/<kind>/<name>/<version>.zarr   where data is written before it is published
    catalog.yaml                     the Intake catalog (carbonsink.catalog)

Publishing (consumers never see a half-written product): data is written under ``_staging/``, read back
and checked, then moved to its place (an atomic rename on a local disk, copy-then-delete on object
stores), attachments are written, and only then the version record and the ``latest`` pointer — each a
single small-object PUT, atomic on S3 — are written. A run that fails at any step leaves ``latest``,
the catalog and every listed version as they were. Storage credentials stay in ``storage_options``:
never in repr, attrs, records or catalogs.

Versions are either timestamped (:func:`new_version`, the default) or content-addressed: the caller
passes a deterministic id (``c-<hash>`` from :func:`carbonsink.pipeline.content_version`) and, before
computing, asks :meth:`Store.complete` whether that version already has a record — if so it is reused
(:meth:`Store.reuse` points ``latest`` at it) instead of recomputed. ``latest`` is the pointer, not
the sort order: :meth:`Store.versions` lists complete versions by the time their record was written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import posixpath
import uuid
from dataclasses import dataclass

import fsspec
import xarray as xr

ZARR_FORMAT = 3
STAGING = "_staging"


class StoreError(RuntimeError):
    """A store problem; ``transient`` when retrying later may succeed (the store was unreachable)."""

    def __init__(self, *args, transient: bool = False):
        super().__init__(*args)
        self.transient = transient


@dataclass(frozen=True)
class Published:
    kind: str
    name: str
    version: str
    uri: str            # the version's Zarr URL
    record: dict
    reused: bool = False  # an existing complete version was reused instead of recomputed

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _now() -> str:
    """The one timestamp format of version records (UTC, microseconds)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def _parse_time(text) -> _dt.datetime:
    """A record's ``created`` as an aware datetime (records of any ISO precision compare
    correctly; as strings "12:00:01+00:00" sorts before "12:00:01.5+00:00")."""
    if not text:
        return _EPOCH
    t = _dt.datetime.fromisoformat(str(text))
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def new_version(tag: str | None = None) -> str:
    """Sortable version id: UTC timestamp (µs) plus a content tag or a random suffix."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"v{stamp}-{(tag or uuid.uuid4().hex)[:8]}"


class Store:
    """A store root URL plus storage options (kept out of every repr and record)."""

    def __init__(self, url: str, storage_options: dict | None = None):
        if "://" not in url:
            url = "file://" + os.path.abspath(os.path.expanduser(url))
        self.url = url.rstrip("/")
        self._storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self._storage_options)
        self.protocol = self.url.split("://", 1)[0]
        if self.protocol == "file":
            self.fs.makedirs(self.root, exist_ok=True)
        elif self.protocol == "s3":
            bucket = self.root.split("/", 1)[0]
            try:
                exists = self.fs.exists(bucket)
                if not exists:
                    # s3fs's exists() also answers False when the server cannot be reached: ask
                    # again in a way that raises the real error (a missing bucket stays False)
                    with contextlib.suppress(FileNotFoundError, PermissionError):
                        self.fs.ls(bucket, refresh=True)
                        exists = True
            except Exception as e:  # noqa: BLE001 - wrap anything the client raises, without options
                raise StoreError(f"cannot reach object store for {self.url}: {type(e).__name__}: "
                                 f"{e}", transient=True) from None
            if not exists:
                raise StoreError(f"bucket {bucket!r} of {self.url} does not exist or is not "
                                 "reachable with the given credentials")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def storage_options(self) -> dict:
        return dict(self._storage_options)

    # --- paths -------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Filesystem path (no protocol) under the root."""
        return posixpath.join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """Full URL under the root."""
        return posixpath.join(self.url, *parts) if parts else self.url

    def zarr_target(self, rel: str) -> str:
        """What xarray/zarr should open: a plain path locally (zarr's LocalStore makes parent
        directories; its fsspec store does not), the URL elsewhere."""
        return self.path(rel) if self.protocol == "file" else self.uri(rel)

    # --- small files -------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write a small file atomically: temp + rename locally, a single PUT on object stores."""
        path = self.path(rel)
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        if self.protocol == "file":
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)
        return self.uri(rel)

    def write_text(self, rel: str, text: str) -> str:
        return self.write_bytes(rel, text.encode())

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def _fresh(self, rel: str):
        """Forget cached listings of ``rel``'s directory: records and pointers are written by other
        processes (other dask workers, other runs), and a stale listing would hide them."""
        self.fs.invalidate_cache(self.path(posixpath.dirname(rel)))

    # --- datasets ----------------------------------------------------------------------------
    def write_zarr(self, ds: xr.Dataset, rel: str, *, compute=None, also=None):
        """Write ``ds`` to a Zarr group at ``rel`` (replacing it).

        ``compute(*collections) -> results`` runs the dask graphs (default: the active client, else
        the local scheduler). ``also``: a lazy object computed in the same pass as the write (so
        shared inputs are produced once); its computed value is returned.
        """
        ds = _prepare_for_zarr(ds)
        opts = None if self.protocol == "file" else (self._storage_options or None)
        delayed = ds.to_zarr(self.zarr_target(rel), mode="w", storage_options=opts,
                             zarr_format=ZARR_FORMAT, consolidated=False, compute=False)
        compute = compute or compute_default
        if also is None:
            compute(delayed)
            return None
        import dask
        return compute(delayed, dask.delayed(also))[1]

    def open_zarr(self, rel_or_uri: str, **kwargs) -> xr.Dataset:
        if "://" in rel_or_uri:
            uri, target = rel_or_uri, rel_or_uri
        else:
            uri, target = self.uri(rel_or_uri), self.zarr_target(rel_or_uri)
        opts = None if "://" not in target or target.startswith("file://") else (
            self._storage_options or None)
        ds = xr.open_zarr(target, storage_options=opts, consolidated=False, **kwargs)
        ds.encoding["source"] = uri
        return ds

    # --- versions ----------------------------------------------------------------------------
    def publish(self, ds: xr.Dataset, kind: str, name: str, *, version: str | None = None,
                attachments=None, record: dict | None = None, compute=None,
                check=None) -> Published:
        """Write ``ds`` as a new version of ``kind/name`` and make it ``latest`` atomically.

        ``attachments``: {suffix: bytes}, or a callable taking the staged (written, reopened)
        dataset and returning that dict — so tables are computed from what was written, before the
        version becomes visible. ``record``: extra JSON-able fields for the version record.
        """
        version = version or new_version()
        with self.stage(kind, name, version) as staged:
            computed = self.write_zarr(ds, staged, compute=compute,
                                       also=None if check is None else check[0])
            if check is not None:
                check[1](computed)
            back = self._check_written(ds, staged)
            if callable(attachments):
                attachments = attachments(back)
        return self.commit(kind, name, version, ds, attachments=attachments, record=record)

    @contextlib.contextmanager
    def stage(self, kind: str, name: str, version: str):
        """The staging location (a store-relative path) where a new version of ``kind/name`` is
        written before :meth:`commit` makes it visible. Emptied on entry; removed again if the body
        raises, so a failed write leaves the store as it was."""
        if self.complete(kind, name, version) is not None:
            raise StoreError(f"{kind}/{name} version {version} is already published")
        staged = f"{STAGING}/{kind}/{name}/{version}.zarr"
        self._remove(staged)
        try:
            yield staged
        except BaseException:
            self._remove(staged)
            raise
        finally:
            self._prune_staging()

    def commit(self, kind: str, name: str, version: str, ds: xr.Dataset, *, attachments=None,
               record: dict | None = None) -> Published:
        """Make a staged, checked version visible: move it into place, write its attachments and
        its record (the version is complete from then on), then point ``latest`` at it.

        ``ds``: the dataset (or a lazy template with the same variables and sizes) that was staged.
        """
        rel = f"{kind}/{name}/{version}.zarr"
        staged = f"{STAGING}/{rel}"
        if not self.exists(staged):
            raise StoreError(f"nothing staged for {kind}/{name} version {version}")
        self._remove(rel)
        self._move(staged, rel)
        self._prune_staging()
        attached = {}
        for suffix, data in (attachments or {}).items():
            attached[suffix] = self.write_bytes(f"{kind}/{name}/{version}.{suffix}", data)
        rec = {
            "kind": kind, "name": name, "version": version, "path": rel,
            "created": _now(),
            "variables": sorted(ds.data_vars), "dims": {k: int(v) for k, v in ds.sizes.items()},
            "attachments": {s: f"{kind}/{name}/{version}.{s}" for s in attached},
            **(record or {}),
        }
        self.write_text(f"{kind}/{name}/{version}.json", json.dumps(rec, indent=2, default=str))
        self.write_text(f"{kind}/{name}/latest.json", json.dumps({"version": version}))
        return Published(kind, name, version, self.uri(rel), rec)

    def versions(self, kind: str, name: str) -> list[str]:
        """Complete versions (those with a record), oldest first by the time their record was
        written (ties by id). Content-addressed ids do not sort by time: ``latest`` is the pointer,
        not the last of this list."""
        base = self.path(kind, name)
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        out = []
        for p in self.fs.ls(base, detail=False):
            leaf = posixpath.basename(p.rstrip("/"))
            if leaf.endswith(".json") and leaf != "latest.json":
                v = leaf[:-5]
                try:
                    created = _parse_time(
                        json.loads(self.read_text(f"{kind}/{name}/{leaf}")).get("created"))
                except (OSError, ValueError):
                    created = _EPOCH
                out.append((created, v))
        return [v for _, v in sorted(out)]

    def latest(self, kind: str, name: str) -> str | None:
        rel = f"{kind}/{name}/latest.json"
        self._fresh(rel)
        if not self.exists(rel):
            return None
        return json.loads(self.read_text(rel))["version"]

    def complete(self, kind: str, name: str, version: str) -> Published | None:
        """The published version if it is complete (its record exists), else None."""
        rel = f"{kind}/{name}/{version}.json"
        self._fresh(rel)
        if not self.exists(rel):
            return None
        rec = json.loads(self.read_text(rel))
        return Published(kind, name, version, self.uri(rec["path"]), rec)

    def set_latest(self, kind: str, name: str, version: str) -> None:
        """Point ``latest`` at a complete version (one small atomic write; none if it already
        points there)."""
        if self.complete(kind, name, version) is None:
            raise StoreError(f"{kind}/{name} has no complete version {version!r} in {self.url}")
        if self.latest(kind, name) != version:
            self.write_text(f"{kind}/{name}/latest.json", json.dumps({"version": version}))

    def reuse(self, kind: str, name: str, version: str) -> Published | None:
        """If ``version`` is complete, make it ``latest`` and return it marked ``reused``; else
        None (the caller computes and publishes it)."""
        p = self.complete(kind, name, version)
        if p is None:
            return None
        self.set_latest(kind, name, version)
        return dataclasses.replace(p, reused=True)

    def record(self, kind: str, name: str, version: str = "latest") -> dict:
        version = self.resolve(kind, name, version)
        return json.loads(self.read_text(f"{kind}/{name}/{version}.json"))

    def resolve(self, kind: str, name: str, version: str = "latest") -> str:
        if version == "latest":
            v = self.latest(kind, name)
            if v is None:
                raise StoreError(f"nothing published under {kind}/{name} in {self.url}")
            return v
        self._fresh(f"{kind}/{name}/{version}.json")
        if not self.exists(f"{kind}/{name}/{version}.json"):
            raise StoreError(f"{kind}/{name} has no complete version {version!r} in {self.url}")
        return version

    def open(self, kind: str, name: str, version: str = "latest", **kwargs) -> xr.Dataset:
        """Open a published version lazily (``latest`` by default)."""
        version = self.resolve(kind, name, version)
        ds = self.open_zarr(f"{kind}/{name}/{version}.zarr", **kwargs)
        ds.attrs.setdefault("version", version)
        return ds

    def published(self) -> list[Published]:
        """The latest complete version of every published dataset."""
        out = []
        for kind in ("inputs", "products"):
            base = self.path(kind)
            self.fs.invalidate_cache(base)
            if not self.fs.exists(base):
                continue
            for p in sorted(self.fs.ls(base, detail=False)):
                name = posixpath.basename(p.rstrip("/"))
                v = self.latest(kind, name)
                if v is not None:
                    rec = self.record(kind, name, v)
                    out.append(Published(kind, name, v, self.uri(rec["path"]), rec))
        return out

    # --- internals ---------------------------------------------------------------------------
    def _remove(self, rel: str):
        path = self.path(rel)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def _prune_staging(self):
        """Remove empty directories left under _staging/ (local disks; object stores have none),
        so a failed publish leaves the store exactly as it was."""
        if self.protocol != "file":
            return
        top = self.path(STAGING)
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass  # not empty: a write in progress or a kept staged copy

    def _move(self, src_rel: str, dst_rel: str):
        src, dst = self.path(src_rel), self.path(dst_rel)
        self.fs.makedirs(posixpath.dirname(dst), exist_ok=True)
        if self.protocol == "file":
            os.rename(src, dst)  # atomic on one filesystem
        else:
            self.fs.copy(src, dst, recursive=True)
            self.fs.rm(src, recursive=True)
        self.fs.invalidate_cache()

    def _check_written(self, ds: xr.Dataset, rel: str):
        back = self.open_zarr(rel)
        missing = set(ds.data_vars) - set(back.data_vars)
        if missing or dict(back.sizes) != dict(ds.sizes):
            raise StoreError(f"staged write of {rel} is incomplete: missing {sorted(missing)}, "
                             f"sizes {dict(back.sizes)} vs {dict(ds.sizes)}")
        return back


def _prepare_for_zarr(ds: xr.Dataset) -> xr.Dataset:
    """Georeference datasets on a grid preset (CF grid mapping GDAL/rioxarray read) and drop
    encodings inherited from a source store (old chunks/codecs clash with the new layout)."""
    from ..grid import georeference

    if "lat" in ds.coords and "lon" in ds.coords:
        try:
            ds = georeference(ds)
        except ValueError:
            pass  # not on a preset grid (e.g. a table-like dataset): stored as given
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {k: val for k, val in v.encoding.items()
                      if k in ("dtype", "_FillValue", "units", "calendar") }
    return ds


def compute_default(*collections, progress: bool = False):
    """Compute dask collections together (shared tasks run once) on the active distributed client
    if there is one, else the local scheduler; optionally with a progress bar. Returns results."""
    import dask

    try:
        from distributed import default_client
        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        if progress:
            from dask.diagnostics import ProgressBar
            with ProgressBar():
                return dask.compute(*collections)
        return dask.compute(*collections)
    futures = client.compute(list(collections))
    if progress:
        from distributed import progress as dprogress
        dprogress(futures, notebook=False)
        print(flush=True)
    return client.gather(futures)


# Exception classes (by name, so that no client library has to be importable) of object-store
# clients that mean "the server could not be reached or dropped the connection": worth a retry.
_TRANSIENT_NAMES = {
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ProxyConnectionError", "HTTPClientError",                        # botocore
    "ClientConnectionError", "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
    "ServerTimeoutError", "ClientPayloadError",                       # aiohttp
    "FSTimeoutError", "IncompleteRead", "ResponseParserError",
}
# OSErrors that say something about the data, not the connection: retrying will not help
_PERMANENT_OS_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                        PermissionError)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a transient storage or network failure —
    an unreachable or restarting object store, a dropped connection, a timeout — so that a retry
    may succeed. Bad input, configuration and unit errors (all ``ValueError``) and missing data
    are not transient. Used by the orchestration layer's retry policy."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ValueError, TypeError, KeyError, _PERMANENT_OS_ERRORS)):
            return False
        if getattr(exc, "transient", False) or isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, OSError) or any(c.__name__ in _TRANSIENT_NAMES
                                           for c in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
