"""Coordination between writers that share a store: exclusive creates, claims on a version id and
short locks — on local disks and on object stores alike.

Two runs of the same configuration compute the same content-addressed versions. Without
coordination both stage and publish them, and one can move or delete what the other is still
writing. Here:

- :func:`create_exclusive` writes a small object only if it does not exist yet: ``O_CREAT|O_EXCL``
  on a local disk, a conditional PUT (``If-None-Match: *``) on S3. It is the one primitive.
- :class:`Claim` is held by the one writer computing a version: an exclusive ``<version>.claim``
  object with the holder's token and a heartbeat (rewritten every ``HEARTBEAT_S`` by a thread).
  Another writer that finds a live claim waits for the version to become complete and reuses it;
  if the holder died (heartbeat older than ``CLAIM_TTL_S``, or at once when its pid on the same
  host is gone, e.g. after SIGKILL) or gave up (the claim disappears without a record), the waiter
  takes the claim over and computes it itself.
- :class:`Lock` serialises short read-modify-write steps (the release record, the catalog) with the
  same claim object and a shorter time-to-live.

Breaking a stale claim is the one step that is not atomic on object stores (S3 has no conditional
delete); two breakers can both delete it, but only one of them then creates it again.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

from .errors import StoreError
from .names import validate_key

log = logging.getLogger("carbonsink")

# a claim whose heartbeat is older than this (4.5 missed beats) belongs to a writer that died, or
# that failed and could not remove it (the object store was down at that moment)
CLAIM_TTL_S = 45.0
HEARTBEAT_S = 10.0
LOCK_TTL_S = 60.0
POLL_S = 0.5


def in_dir(path: str, fn, attempts: int = 20):
    """``fn()`` after making ``path``'s local parent folder; again if a concurrent writer's cleanup
    removed the (then empty) folder in between."""
    for i in range(attempts):
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return fn()
        except FileNotFoundError:
            if i == attempts - 1 or os.path.isdir(os.path.dirname(path)):
                raise


def create_exclusive(store, rel: str, data: bytes) -> bool:
    """Create the small object ``rel`` with ``data`` if it does not exist; True if this call
    created it, False if it existed already."""
    path = store.path(rel)
    if store.protocol == "file":
        try:
            fd = in_dir(path, lambda: os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.remove(path)    # an empty claim (disk full) would look held by nobody forever
            raise
        return True
    if store.protocol == "s3":
        try:
            store.fs.pipe_file(path, data, mode="create")   # If-None-Match: *
        except FileExistsError:
            return False
        finally:
            store.fs.invalidate_cache(os.path.dirname(path))
        return True
    # other fsspec filesystems (memory://): check-then-write, atomic only within one process
    store.fs.makedirs(os.path.dirname(path), exist_ok=True)
    if store.fs.exists(path):
        return False
    store.fs.pipe_file(path, data)
    return True


def _read_json(store, rel: str) -> dict | None:
    try:
        store.fs.invalidate_cache(os.path.dirname(store.path(rel)))
        return json.loads(store.read_bytes(rel))
    except (FileNotFoundError, ValueError):
        return None   # gone, or caught half-written by a non-atomic filesystem: look again


def _pid_alive(pid) -> bool:
    import psutil

    try:
        return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, TypeError, ValueError):
        return False
    except psutil.AccessDenied:
        return True


def _dead(held: dict, ttl: float) -> bool:
    """Whether a claim's holder is gone: its heartbeat is older than ``ttl``, or it ran on this
    host under a pid that no longer lives (a SIGKILLed run is recognised at once)."""
    if time.time() - float(held.get("heartbeat", 0)) > ttl:
        return True
    return held.get("host") == socket.gethostname() and not _pid_alive(held.get("pid"))


class Claim:
    """An exclusive, heart-beaten hold on ``rel`` (see module doc). Use :meth:`acquire` in a loop
    with a ``done()`` check, or the helper :func:`claim_or_wait`."""

    def __init__(self, store, rel: str, *, ttl: float = CLAIM_TTL_S, heartbeat: float = HEARTBEAT_S,
                 what: str = ""):
        validate_key(rel)
        self.store, self.rel, self.ttl, self.heartbeat = store, rel, ttl, heartbeat
        self.what = what or rel
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                           "heartbeat": time.time(), "what": self.what}).encode()

    def acquire(self) -> bool:
        """Take the claim if it is free or stale; True if this writer holds it now."""
        if create_exclusive(self.store, self.rel, self._body()):
            self._start_heartbeat()
            return True
        held = _read_json(self.store, self.rel)
        if held is None:
            # released between our create and our read (next round takes it), or unreadable: an
            # empty or cut-short claim older than a few seconds is left over, not being written
            if self._unreadable_for(5.0):
                self._break()
            return False
        if _dead(held, self.ttl):
            # the holder stopped beating (killed): break the claim; the next create decides
            self._break()
            if create_exclusive(self.store, self.rel, self._body()):
                self._start_heartbeat()
                return True
        return False

    def _break(self):
        try:
            self.store.fs.rm(self.store.path(self.rel))
        except FileNotFoundError:
            pass

    def _unreadable_for(self, seconds: float) -> bool:
        """Whether the claim object exists, cannot be parsed, and is older than ``seconds``."""
        try:
            info = self.store.fs.info(self.store.path(self.rel))
        except FileNotFoundError:
            return False
        modified = info.get("mtime") or info.get("LastModified") or info.get("created")
        if hasattr(modified, "timestamp"):
            modified = modified.timestamp()
        return modified is not None and time.time() - float(modified) > seconds

    def holder(self) -> dict | None:
        return _read_json(self.store, self.rel)

    def _start_heartbeat(self):
        if self.heartbeat <= 0:
            return

        def beat():
            while not self._stop.wait(self.heartbeat):
                held = _read_json(self.store, self.rel)
                if held is None or held.get("token") != self.token:
                    return   # lost (broken by another writer that thought us dead): stop beating
                try:
                    self.store.write_bytes(self.rel, self._body())
                except Exception:   # noqa: BLE001 - a missed beat is retried at the next one
                    pass
        self._thread = threading.Thread(target=beat, name=f"claim:{self.rel}", daemon=True)
        self._thread.start()

    def release(self):
        """Stop beating and remove the claim if it is still ours. Best effort: when the store is
        unreachable the claim stays and goes stale after ``ttl`` (the caller's own error, which is
        what matters, is not replaced by this one)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            held = _read_json(self.store, self.rel)
            if held is not None and held.get("token") == self.token:
                self.store.fs.rm(self.store.path(self.rel))
        except FileNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001 - see docstring
            log.warning("could not remove %s (%s: %s); it expires in %.0f s", self.rel,
                        type(e).__name__, e, self.ttl)


class Lock:
    """A short exclusive section (``with Lock(store, "releases"): ...``) over all processes that
    use the store; a lock older than ``ttl`` seconds is taken to be left by a dead process."""

    def __init__(self, store, name: str, *, ttl: float = LOCK_TTL_S, timeout: float = 300.0):
        self.claim = Claim(store, f"_locks/{name}.lock", ttl=ttl, heartbeat=ttl / 4,
                           what=f"lock {name}")
        self.timeout = timeout
        self.name = name

    def __enter__(self):
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while not self.claim.acquire():
            if time.monotonic() > deadline:
                holder = self.claim.holder() or {}
                raise StoreError(f"could not take the store lock {self.name!r} of "
                                 f"{self.claim.store.url} within {self.timeout:.0f} s (held by "
                                 f"pid {holder.get('pid')} on {holder.get('host')}); if that "
                                 f"process is gone, delete _locks/{self.name}.lock")
            time.sleep(delay)
            delay = min(delay * 2, POLL_S)
        return self

    def __exit__(self, *exc):
        self.claim.release()
        return False
