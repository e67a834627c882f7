"""Names that become paths in a store, validated in one place for every entry point (CLI, flows,
library): dataset names, version ids, run prefixes and store-relative keys. A name is one path
segment of letters, digits, ``_``, ``-`` and ``.`` that starts with a letter or digit — so
``../x``, ``a/b``, absolute paths, ``~``, hidden names and empty names never reach the filesystem
or the object store."""
from __future__ import annotations

import re

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
KINDS = ("inputs", "products")


class InvalidName(ValueError):
    """A dataset name, version or prefix that would not stay one segment inside the store."""


def validate_name(name: str, what: str = "dataset name") -> str:
    """``name`` if it is a single safe path segment (see module doc); else a ValueError that names
    ``what`` and the value."""
    if not isinstance(name, str) or not _SEGMENT.fullmatch(name) or ".." in name:
        raise InvalidName(f"invalid {what} {name!r}: use 1–128 letters, digits, '_', '-' or '.', "
                         "starting with a letter or digit (no '/', '..' or spaces)")
    return name


def validate_prefix(prefix: str) -> str:
    """A product-name prefix ('' or a safe segment, e.g. ``observed_``)."""
    if prefix:
        try:
            validate_name(prefix + "x", "prefix")      # a prefix may end in '_' or '-'
        except InvalidName:
            raise InvalidName(f"invalid prefix {prefix!r}: use letters, digits, '_', '-' or '.', "
                              "starting with a letter or digit (no '/', '..' or spaces)") from None
    return prefix


def validate_version(version: str) -> str:
    if version == "latest":
        return version
    return validate_name(version, "version id")


def validate_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidName(f"invalid dataset kind {kind!r}: one of {KINDS}")
    return kind


def validate_key(rel: str) -> str:
    """A store-relative key: segments joined by '/', each safe (staging and lock keys included)."""
    parts = str(rel).split("/")
    if not rel or rel.startswith("/") or any(not p or p in (".", "..") for p in parts):
        raise InvalidName(f"invalid store key {rel!r}: it must stay inside the store")
    for p in parts:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", p):
            raise InvalidName(f"invalid store key {rel!r}: segment {p!r}")
    return rel
