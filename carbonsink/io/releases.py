"""Releases: what ``latest`` means. A release names the version of every dataset that is current
together; ``releases/current.json`` holds the current one (one small atomic write), and
``releases/<id>.json`` keeps every release ever made, so a rollback is a new release with an old
mapping. Mixed into :class:`carbonsink.io.store.Store` (it uses the store's files, locks and
records)."""
from __future__ import annotations

import json
import logging
import os
import posixpath
import time
from collections.abc import Iterable

from .errors import StoreError
from .names import validate_name
from .timestamps import new_version, now, parse_time

RELEASES = "releases"
log = logging.getLogger("carbonsink")


def _ref(p) -> tuple[str, str, str]:
    """(kind, name, version) of a Published or a tuple."""
    return (p.kind, p.name, p.version) if hasattr(p, "version") else tuple(p)


class ReleasesMixin:
    def current_release(self) -> dict:
        """The current release record ({} if nothing was ever released)."""
        rel = f"{RELEASES}/current.json"
        self._fresh(rel)
        try:
            return self.read_json(rel)
        except FileNotFoundError:
            return {}
        except StoreError:
            # every release is written to the history before it becomes current: the newest
            # intact one there is what current.json held (verify --repair rewrites it)
            history = self.releases()
            if not history:
                raise
            log.warning("%s is damaged: using release %s of the history", self.uri(rel),
                        history[-1]["release"])
            return history[-1]

    def latest(self, kind: str, name: str) -> str | None:
        """The released version of ``kind/name`` (None if none is)."""
        key = self._dataset(kind, name)
        return self.current_release().get("datasets", {}).get(key)

    def release(self, published: Iterable, *, replace: bool = False, note: str = "",
                after=None) -> str:
        """Make the given versions (Published or (kind, name, version)) ``latest`` together: one
        atomic write of ``releases/current.json`` holding every dataset's version (the previous
        release's, updated by these; or only these with ``replace``). Every version must be
        complete and intact. ``after()`` runs inside the same store lock (the catalog), so two
        processes releasing at once lose nothing. Returns the release id (unchanged if nothing
        moved)."""
        refs = [_ref(p) for p in published]
        for kind, name, version in refs:
            if self.complete(kind, name, version) is None:
                raise StoreError(f"{kind}/{name} has no complete version {version!r} in {self.url}")
        with self.lock("releases"):
            cur = self.current_release()
            datasets = {} if replace else dict(cur.get("datasets", {}))
            datasets.update({self._dataset(k, n): v for k, n, v in refs})
            rid = cur.get("release", "")
            if datasets != cur.get("datasets"):
                rid = new_version(prefix="r")
                body = json.dumps({"release": rid, "created": now(),
                                   "parent": cur.get("release"), "note": note,
                                   "datasets": dict(sorted(datasets.items()))}, indent=2)
                self.write_text(f"{RELEASES}/{rid}.json", body)   # history first, then current
                self.write_text(f"{RELEASES}/current.json", body)
            if after is not None:
                after()
            self._sweep_temporaries(["", RELEASES, *datasets])
        return rid

    def _sweep_temporaries(self, rels, older_than_s: float = 600.0):
        """Remove ``*.tmp`` files (of small writes cut short by a killed process) older than
        ``older_than_s`` from the given folders of a local store; in-flight ones are younger."""
        if self.protocol != "file":
            return
        limit = time.time() - older_than_s
        for rel in rels:
            try:
                entries = list(os.scandir(self.path(rel) if rel else self.root))
            except OSError:
                continue
            for e in entries:
                if e.name.endswith(".tmp") and e.is_file():
                    try:
                        if e.stat().st_mtime < limit:
                            os.remove(e.path)
                    except OSError:
                        pass

    def set_latest(self, kind: str, name: str, version: str) -> None:
        """Point ``latest`` of one dataset at a complete version (a one-dataset release)."""
        self.release([(kind, name, version)])

    def releases(self) -> list[dict]:
        """Every release, oldest first."""
        base = self.path(RELEASES)
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        out = []
        for p in sorted(self.fs.ls(base, detail=False)):
            leaf = posixpath.basename(p)
            if leaf.startswith("r") and leaf.endswith(".json"):
                try:
                    out.append(self.read_json(f"{RELEASES}/{leaf}"))
                except (StoreError, FileNotFoundError):
                    log.warning("skipping damaged release record %s", leaf)
        return sorted(out, key=lambda r: parse_time(r.get("created")))

    def rollback(self, release_id: str, after=None) -> str:
        """Make an earlier release current again (as a new release with the same datasets)."""
        validate_name(release_id, "release id")
        try:
            old = self.read_json(f"{RELEASES}/{release_id}.json")
        except FileNotFoundError:
            raise StoreError(f"no release {release_id!r} in {self.url}") from None
        refs = [(*k.split("/", 1), v) for k, v in old["datasets"].items()]
        return self.release(refs, replace=True, note=f"rollback to {release_id}", after=after)

    def published(self) -> list:
        """The released version (a ``Published``) of every dataset of the current release, sorted by
        kind and name."""
        out = []
        for key, v in sorted(self.current_release().get("datasets", {}).items()):
            kind, name = key.split("/", 1)
            p = self.complete(kind, name, v)
            if p is not None:
                out.append(p)
        return out

