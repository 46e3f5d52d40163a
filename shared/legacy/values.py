"""Legacy values in the shapes our services store, and the ids both sides agree on.

The legacy app kept naive timestamps (UTC unless its server ran in another zone), booleans as
0/1, lists as JSON text (or, in older rows, a bare address), and integer ids. Every service
turns a legacy id into the same UUID without asking another (:func:`legacy_uuid`), so a user's
documents, mail and queries meet under one owner, and a second import finds every row again.
"""

import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from email.utils import getaddresses
from functools import lru_cache
from typing import Any

# Fixed forever: changing it would give every imported row a new id on the next run.
LEGACY_NAMESPACE = uuid.UUID("6f1d8f4e-4c1a-5b7e-9a35-2f0c1e5d7b11")
TEXT_SEPARATOR = "\x1f"


class BadValue(ValueError):
    """A legacy value that cannot be read; the message names the value for the report."""


def legacy_uuid(table: str, legacy_id: int | str) -> uuid.UUID:
    """The new id of legacy row ``table:legacy_id`` (uuid5): the same in every service and run."""
    return uuid.uuid5(LEGACY_NAMESPACE, f"{table}:{legacy_id}")


def timestamp(value: Any, zone: tzinfo = UTC) -> datetime:
    """A legacy timestamp as an aware UTC datetime. Naive values (``YYYY-MM-DD HH:MM:SS`` with or
    without microseconds, as SQLite stores them, or a naive ``datetime`` from PostgreSQL) are
    read in ``zone``, the legacy server's time zone."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadValue(f"unreadable timestamp {value[:40]!r}") from None
    else:
        raise BadValue(f"missing or unreadable timestamp {value!r}"[:80])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def optional_timestamp(value: Any, zone: tzinfo = UTC) -> datetime | None:
    return None if value is None or value == "" else timestamp(value, zone)


def boolean(value: Any, default: bool = False) -> bool:
    """SQLite's 0/1 (or '0'/'1', 'true'/'false'), PostgreSQL's booleans; NULL is ``default``."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "t", "yes"):
            return True
        if lowered in ("0", "false", "f", "no"):
            return False
        raise BadValue(f"unreadable boolean {value[:20]!r}")
    return bool(value)


def json_list(value: Any) -> list[Any]:
    """A JSON array stored as text; anything else that is not empty becomes a one-item list."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return [value]
    if isinstance(parsed, list):
        return parsed
    return [] if parsed is None else [parsed]


def addresses(value: Any) -> list[dict[str, str]]:
    """Recipients as the mail service stores them (``{"name", "email"}``): a JSON array of
    addresses, or a bare address (or comma-separated addresses) as older rows kept them."""
    entries = [str(entry) for entry in json_list(value) if entry]
    return [{"name": name, "email": address} for name, address in getaddresses(entries) if address]


@lru_cache(maxsize=1 << 16)
def addresses_json(value: str | None) -> str:
    """:func:`addresses` as JSON text, remembered: a mailbox's recipient lists repeat (the same
    few correspondents), and parsing addresses is the import's costliest step per email."""
    return json.dumps(addresses(value))


@lru_cache(maxsize=1 << 12)
def strings_json(value: str | None) -> str:
    """A JSON list of strings (e.g. Gmail labels) as JSON text of strings, remembered."""
    return json.dumps([str(item) for item in json_list(value)])


def clean_text(value: Any) -> str:
    """Text PostgreSQL can store: it refuses NUL characters, which SQLite keeps."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def row_digest(parts: Iterable[Any]) -> int:
    """A 64-bit digest of a row's content, summed per user into an order-free checksum.

    The same digest is computed inside PostgreSQL over what was stored (:func:`digest_sql`), so
    the verification reads back a sum per user, not every row."""
    joined = TEXT_SEPARATOR.join("" if part is None else str(part) for part in parts)
    return int.from_bytes(
        hashlib.md5(joined.encode("utf-8"), usedforsecurity=False).digest()[:8], "big", signed=True
    )


def digest_sql(*columns: str) -> str:
    """SQL for :func:`row_digest` of ``columns`` (NULL counts as empty text), to ``sum()``."""
    joined = ", ".join(f"coalesce(({column})::text, '')" for column in columns)
    return f"('x' || substr(md5(concat_ws(chr(31), {joined})), 1, 16))::bit(64)::bigint"
