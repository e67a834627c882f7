"""The one place that touches storage: Zarr datasets and small files on file://, s3://, memory://.

Layout under the store root::

    <kind>/<name>/<version>.zarr            published data (kind: inputs | products), Zarr v2
    <kind>/<name>/<version>.<ext>           attachments of a version (e.g. totals.csv)
    <kind>/<name>/<version>.manifest.json   what the version consists of (objects, sizes, chunks)
    <kind>/<name>/<version>.json            version record; with it the version is complete
    <kind>/<name>/<version>.claim           held while one writer computes that version
    releases/current.json                   the current release: {dataset: version} of everything
    releases/<release>.json                 every release ever made (history, rollback)
    _staging/<writer>/<kind>/<name>/<version>.zarr   one writer's data before it is published
    _locks/<name>.lock                      short exclusive sections (release, catalog)
    catalog.yaml                            the Intake catalog (carbonsink.catalog)

Publishing (consumers never see a half-written product): one writer claims the version id
(:meth:`Store.claim`; a second writer of the same id waits and reuses the first one's result),
writes under its own staging folder, which the commit checks against the Zarr metadata (every
array, every chunk — see :mod:`carbonsink.io.integrity`), moves into place (an atomic rename on a
local disk, copy-then-delete on object stores), verifies again, and only then writes attachments,
the manifest and the version record. Versions become *visible* through a release
(:meth:`Store.release`): one small atomic write of ``releases/current.json`` that moves ``latest``
of every dataset of a run together, so a run that fails half-way changes nothing a consumer sees.
A Store made with ``auto_release=True`` (the default) releases every commit at once; the pipeline
and the flows use ``auto_release=False`` and release a whole run at its end.

Versions are either timestamped (:func:`new_version`) or content-addressed (``c-<hash>`` from
:func:`carbonsink.pipeline.content_version`): before computing, the caller asks :meth:`Store.reuse`
whether that version is complete and intact (its record exists and a listing matches its
manifest). A damaged version is quarantined (its record renamed ``.damaged.json``) and recomputed,
never silently reused. Credentials stay in ``storage_options``: never in repr, attrs, records or
catalogs. Names are validated (:mod:`carbonsink.io.names`) before any path is built.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import posixpath
import time
import uuid
from dataclasses import dataclass

import fsspec
import xarray as xr

from . import integrity
from .coordination import POLL_S, Claim, Lock, in_dir
from .errors import StoreError
from .names import validate_key, validate_kind, validate_name, validate_version
from .releases import ReleasesMixin
from .timestamps import EPOCH, new_version, now, parse_time

log = logging.getLogger("carbonsink")

# Zarr v2: GDAL (Debian 3.6, rasterio's 3.10) cannot read Zarr v3 as zarr-python 3 writes it, and
# QGIS users are a large share of this field's users. v3 once GDAL >= 3.13 can be assumed.
ZARR_FORMAT = 2
STAGING = "_staging"
_SUFFIXES = (".manifest.json", ".damaged.json")


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


class Store(ReleasesMixin):
    """A store root URL plus storage options (kept out of every repr and record).

    ``auto_release``: whether each commit (and reuse) is released at once; runs of several datasets
    pass False and call :meth:`release` once at their end."""

    def __init__(self, url: str, storage_options: dict | None = None, *,
                 auto_release: bool = True):
        if "://" not in url:
            url = "file://" + os.path.abspath(os.path.expanduser(url))
        self.url = url.rstrip("/")
        self.auto_release = auto_release
        self._storage_options = dict(storage_options or {})
        self._held: set[str] = set()      # claims and locks this instance holds (re-entrant)
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self._storage_options)
        self.protocol = self.url.split("://", 1)[0]
        if self.protocol == "file":
            try:
                self.fs.makedirs(self.root, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the store directory {self.root}: "
                                 f"{e.strerror or e}") from None
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

    def zarr_storage_options(self, rel_or_uri: str = "") -> dict | None:
        target = rel_or_uri if "://" in rel_or_uri else self.zarr_target(rel_or_uri or "x")
        if "://" not in target or target.startswith("file://"):
            return None
        return self._storage_options or None

    @staticmethod
    def _dataset(kind: str, name: str, version: str | None = None) -> str:
        """``kind/name`` (``/version`` prefix of its files) after validating every part: the one
        place where names from users (CLI, flows, manifests) become paths."""
        validate_kind(kind)
        validate_name(name)
        if version is None:
            return f"{kind}/{name}"
        validate_version(version)
        return f"{kind}/{name}/{version}"

    # --- small files -------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write a small file atomically: temp + rename locally, a single PUT on object stores."""
        validate_key(rel)
        path = self.path(rel)
        if self.protocol == "file":
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"

            def write():
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            try:
                in_dir(path, write)
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)      # a failed write (disk full) leaves no *.tmp behind
        else:
            self.fs.pipe_file(path, data)
        return self.uri(rel)

    def write_text(self, rel: str, text: str) -> str:
        return self.write_bytes(rel, text.encode())

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def read_json(self, rel: str) -> dict:
        """A small JSON file of the store; a truncated or unreadable one is a StoreError naming it."""
        try:
            return json.loads(self.read_bytes(rel))
        except ValueError as e:
            raise StoreError(f"{self.uri(rel)} is damaged (not valid JSON: {e}); "
                             "run 'carbonsink verify --repair'") from None

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def _fresh(self, rel: str):
        """Forget cached listings of ``rel``'s directory: records and pointers are written by other
        processes (other dask workers, other runs), and a stale listing would hide them."""
        self.fs.invalidate_cache(self.path(posixpath.dirname(rel)))

    # --- datasets ----------------------------------------------------------------------------
    def write_zarr(self, ds: xr.Dataset, rel: str, *, compute=None, also=None):
        """Write ``ds`` to a Zarr group at ``rel`` (replacing it), every chunk included (so the
        expected chunk keys follow from the metadata, see :mod:`carbonsink.io.integrity`).

        ``compute(*collections) -> results`` runs the dask graphs (default: the active client, else
        the local scheduler). ``also``: a lazy object computed in the same pass as the write (so
        shared inputs are produced once); its computed value is returned.
        """
        ds = _prepare_for_zarr(ds)
        delayed = ds.to_zarr(self.zarr_target(rel), mode="w",
                             storage_options=self.zarr_storage_options(rel),
                             zarr_format=ZARR_FORMAT, consolidated=False, compute=False,
                             write_empty_chunks=True)
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
        ds = xr.open_zarr(target, storage_options=self.zarr_storage_options(target),
                          consolidated=False, **kwargs)
        ds.encoding["source"] = uri
        return ds

    # --- publishing --------------------------------------------------------------------------
    def publish(self, ds: xr.Dataset, kind: str, name: str, *, version: str | None = None,
                attachments=None, record: dict | None = None, compute=None,
                check=None) -> Published:
        """Write ``ds`` as version ``version`` of ``kind/name`` and commit it (released at once if
        ``auto_release``). If another writer holds or completes the same version meanwhile, its
        result is returned (``reused``) instead.

        ``attachments``: {suffix: bytes}, or a callable taking the staged (written, reopened)
        dataset and returning that dict — so tables are computed from what was written, before the
        version becomes visible. ``record``: extra JSON-able fields for the version record.
        ``check``: (lazy statistics, callable) — the statistics are computed in the same pass as
        the write and the callable raises if they are bad, before anything is committed.
        """
        version = version or new_version()
        with self.claim(kind, name, version) as done:
            if done is not None:
                return done
            with self.stage(kind, name, version) as staged:
                computed = self.write_zarr(ds, staged, compute=compute,
                                           also=None if check is None else check[0])
                if check is not None:
                    check[1](computed)
                back = self._check_written(ds, staged)
                if callable(attachments):
                    attachments = attachments(back)
            return self.commit(kind, name, version, ds, staged=staged, attachments=attachments,
                               record=record)

    @contextlib.contextmanager
    def claim(self, kind: str, name: str, version: str):
        """Hold the exclusive right to compute ``version`` of ``kind/name``; yields None to the
        holder, or the complete version (marked ``reused``) if another writer finished it while
        this one waited. Re-entrant within one Store instance. A holder that dies stops its
        heartbeat; its claim is then taken over (:mod:`carbonsink.io.coordination`)."""
        rel = self._dataset(kind, name, version) + ".claim"
        if rel in self._held:
            yield None
            return
        c = Claim(self, rel, what=f"{kind}/{name}@{version}")
        waited = False
        while True:
            done = self._complete_or_quarantine(kind, name, version)
            if done is not None:
                yield self._reused(done)
                return
            if c.acquire():
                break
            if not waited:
                holder = c.holder() or {}
                log.info("%s/%s %s is being computed by another run (pid %s on %s): waiting for "
                         "it", kind, name, version, holder.get("pid"), holder.get("host"))
                waited = True
            time.sleep(POLL_S)
        self._held.add(rel)
        try:
            done = self.complete(kind, name, version)   # finished between our check and claim
            yield None if done is None else self._reused(done)
        finally:
            self._held.discard(rel)
            c.release()
            self._prune(posixpath.dirname(rel), kind)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 300.0):
        """A short exclusive section over every process using this store (re-entrant here)."""
        key = f"lock:{name}"
        if key in self._held:
            yield
            return
        with Lock(self, name, timeout=timeout):
            self._held.add(key)
            try:
                yield
            finally:
                self._held.discard(key)

    @contextlib.contextmanager
    def stage(self, kind: str, name: str, version: str):
        """This writer's own staging location (a store-relative path) for a new version of
        ``kind/name``, written before :meth:`commit` makes it visible. Removed if the body raises,
        so a failed write leaves the store as it was. Another writer's staging is touched only
        when this writer holds the claim on the same version: a staged copy of it left by a writer
        that failed without cleaning up (the store was unreachable, the process was killed) is
        removed then."""
        if self.complete(kind, name, version) is not None:
            raise StoreError(f"{kind}/{name} version {version} is already published")
        writer = f"{STAGING}/w-{uuid.uuid4().hex[:16]}"
        staged = f"{writer}/{self._dataset(kind, name, version)}.zarr"
        if self._dataset(kind, name, version) + ".claim" in self._held:
            self._sweep_abandoned(kind, name, version)
        if self.protocol == "file":
            # our own top folder first: from then on _staging/ is not empty, so no other writer's
            # cleanup can remove a parent of what zarr is about to create
            for _ in range(10):
                try:
                    os.makedirs(self.path(writer), exist_ok=True)
                    break
                except FileNotFoundError:
                    continue
        try:
            yield staged
        except BaseException:
            self._discard(staged)
            raise

    def commit(self, kind: str, name: str, version: str, ds: xr.Dataset, *, staged: str,
               attachments=None, record: dict | None = None) -> Published:
        """Make a staged version complete: check the staged Zarr against its metadata, move it into
        place, check it again, write its attachments, manifest and record; release it if
        ``auto_release``.

        ``ds``: the dataset (or a lazy template with the same variables and sizes) that was staged.
        """
        base = self._dataset(kind, name, version)
        rel = f"{base}.zarr"
        if not self.exists(staged):
            raise StoreError(f"nothing staged for {kind}/{name} version {version}")
        done = self.complete(kind, name, version)
        if done is not None:       # another writer committed it first (a broken claim): keep it
            self._discard(staged)
            return self._reused(done)
        try:
            manifest = integrity.build_manifest(self, staged, list(ds.data_vars))
        except BaseException:
            self._discard(staged)
            raise
        self._remove(rel)
        self._move(staged, rel)
        self._discard(staged)
        problems = integrity.compare(manifest, integrity._listing(self, rel))
        if problems:
            raise StoreError(f"{self.uri(rel)} differs from what was staged after the move: "
                             + "; ".join(problems[:3]))
        attached = {}
        for suffix, data in (attachments or {}).items():
            attached[suffix] = self.write_bytes(f"{base}.{suffix}", data)
        self.write_text(f"{base}.{integrity.MANIFEST_SUFFIX}", json.dumps(manifest))
        rec = {
            "kind": kind, "name": name, "version": version, "path": rel,
            "created": now(), "zarr_format": ZARR_FORMAT,
            "variables": sorted(ds.data_vars), "dims": {k: int(v) for k, v in ds.sizes.items()},
            "attachments": {s: f"{base}.{s}" for s in attached},
            "n_objects": manifest["n_objects"], "bytes": manifest["bytes"],
            **(record or {}),
        }
        self.write_text(f"{base}.json", json.dumps(rec, indent=2, default=str))
        p = Published(kind, name, version, self.uri(rel), rec)
        if self.auto_release:
            self.release([p])
        return p

    # --- versions ----------------------------------------------------------------------------
    def versions(self, kind: str, name: str) -> list[str]:
        """Complete versions (those with a record), oldest first by the time their record was
        written (ties by id). Content-addressed ids do not sort by time: ``latest`` is the release,
        not the last of this list."""
        base = self.path(self._dataset(kind, name))
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        out = []
        for p in self.fs.ls(base, detail=False):
            leaf = posixpath.basename(p.rstrip("/"))
            if leaf.endswith(".json") and not leaf.endswith(_SUFFIXES) and leaf != "latest.json":
                v = leaf[:-5]
                try:
                    created = parse_time(
                        json.loads(self.read_text(f"{kind}/{name}/{leaf}")).get("created"))
                except (OSError, ValueError):
                    created = EPOCH
                out.append((created, v))
        return [v for _, v in sorted(out)]

    def _complete_or_quarantine(self, kind: str, name: str, version: str) -> Published | None:
        """:meth:`complete`, but a damaged (unreadable) record is quarantined — the version is
        then recomputed — instead of stopping the run."""
        try:
            return self.complete(kind, name, version)
        except StoreError as e:
            self.quarantine(kind, name, version, [f"record unreadable: {e}"])
            return None

    def complete(self, kind: str, name: str, version: str) -> Published | None:
        """The published version if it is complete (its record exists), else None."""
        rel = self._dataset(kind, name, version) + ".json"
        self._fresh(rel)
        try:
            rec = self.read_json(rel)
        except FileNotFoundError:
            return None
        return Published(kind, name, version, self.uri(rec["path"]), rec)

    def reuse(self, kind: str, name: str, version: str) -> Published | None:
        """If ``version`` is complete and intact, return it marked ``reused`` (released at once if
        ``auto_release``); else None, and the caller computes and publishes it. A damaged version
        (a listing that does not match its manifest) is quarantined first, so it is recomputed."""
        p = self._complete_or_quarantine(kind, name, version)
        if p is None:
            return None
        problems = integrity.verify(self, kind, name, version)
        if problems:
            self.quarantine(kind, name, version, problems)
            return None
        return self._reused(p)

    def _reused(self, p: Published) -> Published:
        if self.auto_release:
            self.release([p])
        return dataclasses.replace(p, reused=True)

    def verify(self, kind: str, name: str, version: str, *, deep: bool = False) -> list[str]:
        """Problems of a complete version (empty: intact); see :func:`integrity.verify`."""
        return integrity.verify(self, kind, name, version, deep=deep)

    def quarantine(self, kind: str, name: str, version: str, problems: list[str]) -> None:
        """Take a damaged version out of use: its record becomes ``<version>.damaged.json`` (with
        the problems found), so it is no longer complete and the next run recomputes it."""
        base = self._dataset(kind, name, version)
        log.warning("%s/%s %s is damaged (%s): quarantined, it will be recomputed", kind, name,
                    version, "; ".join(problems[:3]))
        try:
            rec = self.read_json(f"{base}.json")
        except (FileNotFoundError, StoreError):
            rec = {}
        self.write_text(f"{base}.damaged.json", json.dumps(
            {**rec, "damaged": problems, "quarantined": now()}, indent=2, default=str))
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(f"{base}.json"))
        self._fresh(f"{base}.json")

    def record(self, kind: str, name: str, version: str = "latest") -> dict:
        version = self.resolve(kind, name, version)
        return self.read_json(f"{self._dataset(kind, name, version)}.json")

    def resolve(self, kind: str, name: str, version: str = "latest") -> str:
        if version == "latest":
            v = self.latest(kind, name)
            if v is None:
                raise StoreError(f"nothing published under {kind}/{name} in {self.url} (no "
                                 "release names it)")
            return v
        if self.complete(kind, name, version) is None:
            raise StoreError(f"{kind}/{name} has no complete version {version!r} in {self.url}")
        return version

    def open(self, kind: str, name: str, version: str = "latest", **kwargs) -> xr.Dataset:
        """Open a published version lazily (``latest`` by default)."""
        version = self.resolve(kind, name, version)
        ds = self.open_zarr(f"{self._dataset(kind, name, version)}.zarr", **kwargs)
        ds.attrs.setdefault("version", version)
        return ds

    # --- internals ---------------------------------------------------------------------------
    def _remove(self, rel: str):
        path = self.path(rel)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def _discard(self, staged: str):
        """Remove this writer's staging folder (``_staging/<writer>``) and nothing else; locally
        also ``_staging`` itself once it is empty."""
        writer = "/".join(staged.split("/")[:2])
        self._remove(writer)
        self._prune(STAGING)
        self.fs.invalidate_cache()

    def _sweep_abandoned(self, kind: str, name: str, version: str):
        """Remove every staged copy of ``version`` (the caller holds its claim, so none is live)."""
        pattern = self.path(STAGING, "*", kind, name, f"{version}.zarr")
        self.fs.invalidate_cache(self.path(STAGING))
        for path in self.fs.glob(pattern):
            rel = posixpath.relpath(path, self.root)
            log.info("removing %s, left by a writer that failed", rel)
            self._discard(rel)

    def _prune(self, *rels: str):
        """Remove the given folders if empty (local disks; object stores have none), so a failed
        or waiting writer leaves no trace. Another writer creating files there meanwhile retries
        its ``makedirs`` (:func:`~carbonsink.io.coordination.in_dir`), so the race is harmless."""
        if self.protocol != "file":
            return
        for rel in rels:
            with contextlib.suppress(OSError):
                os.rmdir(self.path(rel))

    def _move(self, src_rel: str, dst_rel: str):
        src, dst = self.path(src_rel), self.path(dst_rel)
        if self.protocol == "file":
            in_dir(dst, lambda: os.rename(src, dst))  # atomic on one filesystem
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
