"""What a published version consists of, and checks that it still does.

A version's manifest (``<kind>/<name>/<version>.manifest.json``, written before its record) lists
every object of its Zarr group with its size (and, on object stores, the ETag the server computed),
plus each array's shape and chunk grid. Every chunk is written, even one that is all fill value
(``write_empty_chunks=True``), so the expected set of chunk keys follows from the metadata alone:

- :func:`build_manifest` checks a staged Zarr group against that expectation — a chunk missing or
  empty, an array missing — before the version may be committed;
- :func:`verify` compares a published version with its manifest: cheap (one listing: missing,
  extra, resized objects; on S3 also rewritten ones, by ETag), or ``deep`` (on a local disk the
  CRC-32 of every object against the one recorded at commit, and every chunk decoded — a corrupted
  chunk of unchanged size is found either way).
"""
from __future__ import annotations

import itertools
import json
import posixpath
import zlib

from .errors import StoreError

MANIFEST_SUFFIX = "manifest.json"


def _crc32(path: str) -> str:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def _listing(store, rel: str, checksums: bool = False) -> dict[str, dict]:
    """{key relative to ``rel``: {"size": bytes[, "etag": ...][, "crc32": ...]}} of every object
    under ``rel``; ``checksums``: on a local disk also the CRC-32 of each file's bytes (object
    stores have the ETag the server computed)."""
    base = store.path(rel)
    store.fs.invalidate_cache(base)
    try:
        found = store.fs.find(base, detail=True)
    except FileNotFoundError:
        return {}
    out = {}
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        entry = {"size": int(info.get("size") or 0)}
        etag = info.get("ETag") or info.get("etag")
        if etag:
            entry["etag"] = str(etag).strip('"')
        if checksums and store.protocol == "file":
            entry["crc32"] = _crc32(path)
        out[posixpath.relpath(path, base)] = entry
    return out


def expected_chunks(store, rel: str) -> dict[str, dict]:
    """{array name: {"shape", "chunks", "keys"}} from the Zarr metadata of the group at ``rel``."""
    import zarr

    group = zarr.open_group(store.zarr_target(rel), mode="r",
                            storage_options=store.zarr_storage_options(rel))
    arrays = {}
    for name, arr in group.arrays():
        grid = [range(-(-s // c)) for s, c in zip(arr.shape, arr.chunks)]
        keys = [f"{name}/{arr.metadata.encode_chunk_key(idx)}"
                for idx in itertools.product(*grid)]
        arrays[name] = {"shape": list(arr.shape), "chunks": list(arr.chunks), "keys": keys}
    return arrays


def build_manifest(store, rel: str, variables) -> dict:
    """The manifest of the (staged) Zarr group at ``rel``; raises ``StoreError`` naming what is
    missing if a listed variable, an array's metadata or any chunk is absent or empty."""
    objects = _listing(store, rel, checksums=True)   # just written: the bytes are in the cache
    try:
        arrays = expected_chunks(store, rel)
    except Exception as e:  # noqa: BLE001 - unreadable metadata is itself the finding
        raise StoreError(f"{store.uri(rel)}: Zarr metadata unreadable ({type(e).__name__}: {e})")
    problems = [f"variable {v!r} missing" for v in variables if v not in arrays]
    for name, a in arrays.items():
        bad = [k for k in a["keys"] if objects.get(k, {}).get("size", 0) <= 0]
        if bad:
            problems.append(f"{name}: {len(bad)} of {len(a['keys'])} chunks missing or empty "
                            f"(e.g. {bad[0]})")
    if problems:
        raise StoreError(f"staged data at {store.uri(rel)} is incomplete: " + "; ".join(problems))
    return {"objects": objects, "n_objects": len(objects),
            "bytes": sum(o["size"] for o in objects.values()),
            "arrays": {n: {"shape": a["shape"], "chunks": a["chunks"]} for n, a in arrays.items()}}


def compare(manifest: dict, objects: dict[str, dict]) -> list[str]:
    """What differs between a manifest and a listing, one phrase per problem (empty: intact)."""
    problems = []
    want = manifest.get("objects", {})
    missing = sorted(set(want) - set(objects))
    if missing:
        problems.append(f"{len(missing)} object(s) missing (e.g. {missing[0]})")
    for key in sorted(set(want) & set(objects)):
        a, b = want[key], objects[key]
        if a["size"] != b["size"]:
            problems.append(f"{key}: {b['size']} bytes, recorded {a['size']} (truncated or "
                            "rewritten)")
        elif a.get("etag") and b.get("etag") and a["etag"] != b["etag"]:
            problems.append(f"{key}: content changed (ETag {b['etag']} vs recorded {a['etag']})")
        elif a.get("crc32") and b.get("crc32") and a["crc32"] != b["crc32"]:
            problems.append(f"{key}: content changed (CRC-32 {b['crc32']} vs recorded "
                            f"{a['crc32']})")
    extra = sorted(set(objects) - set(want))
    if extra:
        problems.append(f"{len(extra)} unexpected object(s) (e.g. {extra[0]})")
    return problems


def verify(store, kind: str, name: str, version: str, *, deep: bool = False) -> list[str]:
    """Problems of a published version (empty list: intact). Cheap by default: its record and
    manifest exist and one listing of its Zarr group matches the manifest. ``deep``: also decode
    every chunk of every variable."""
    rel = f"{kind}/{name}/{version}.zarr"
    try:
        json.loads(store.read_bytes(f"{kind}/{name}/{version}.json"))
    except FileNotFoundError:
        return ["no record (not complete)"]
    except ValueError:
        return ["record unreadable (truncated): the version is quarantined and recomputed by the "
                "next run"]
    try:
        manifest = json.loads(store.read_bytes(f"{kind}/{name}/{version}.{MANIFEST_SUFFIX}"))
    except FileNotFoundError:
        return ["no manifest (published before manifests existed, or deleted)"]
    except ValueError:
        return ["manifest unreadable (truncated)"]
    problems = compare(manifest, _listing(store, rel, checksums=deep))
    if deep and not problems:
        try:
            ds = store.open_zarr(rel)
            for v in ds.variables:
                ds[v].data.sum().compute() if hasattr(ds[v].data, "dask") else ds[v].values
        except Exception as e:  # noqa: BLE001 - any decoding failure is damage
            problems.append(f"a chunk cannot be decoded: {type(e).__name__}: {e}")
    return problems
