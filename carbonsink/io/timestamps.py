"""The one timestamp format of records and the sortable ids made from it."""
from __future__ import annotations

import datetime as _dt
import uuid

EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def now() -> str:
    """The one timestamp format of version records (UTC, microseconds)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def parse_time(text) -> _dt.datetime:
    """A record's ``created`` as an aware datetime (records of any ISO precision compare
    correctly; as strings "12:00:01+00:00" sorts before "12:00:01.5+00:00")."""
    if not text:
        return EPOCH
    t = _dt.datetime.fromisoformat(str(text))
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def new_version(tag: str | None = None, prefix: str = "v") -> str:
    """Sortable id: UTC timestamp (µs) plus a content tag or a random suffix."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}{stamp}-{(tag or uuid.uuid4().hex)[:8]}"
