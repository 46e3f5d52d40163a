"""The legacy tables, read in id order and in batches, from the legacy SQLite file or from the
PostgreSQL database the legacy app's own migration made of it (same tables and columns).

The source is only ever read: SQLite is opened read-only, PostgreSQL in a read-only
transaction. Columns an older legacy version did not have read as NULL.
"""

import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio
import asyncpg
from anyio import to_thread

Row = dict[str, Any]
BATCH_ROWS = 5000


class SourceError(Exception):
    """The legacy database cannot be opened or is not a legacy database."""


class LegacySource(Protocol):
    description: str

    async def tables(self) -> set[str]: ...

    async def count(self, table: str) -> int: ...

    def rows(self, table: str, columns: Sequence[str], batch: int = BATCH_ROWS) -> AsyncIterator[list[Row]]:
        """Every row of ``table`` in id order, ``columns`` only (absent ones as None)."""
        ...

    async def close(self) -> None: ...


def _quote(name: str) -> str:
    """An SQL identifier. Table and column names come from the importers' constants, never
    from input; quoting them still keeps a statement what it says."""
    return '"' + name.replace('"', '""') + '"'


class SqliteSource:
    """The legacy SQLite file, opened read-only (a running legacy app is not disturbed)."""

    def __init__(self, path: Path) -> None:
        self.description = f"SQLite {path}"
        uri = path.resolve().as_uri() + "?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise SourceError(f"{path} is not a readable SQLite database ({exc})") from None
        self._lock = anyio.Lock()

    async def _run(self, sql: str, *params: Any) -> list[tuple]:
        async with self._lock:
            return await to_thread.run_sync(lambda: self._db.execute(sql, params).fetchall())

    async def tables(self) -> set[str]:
        return {row[0] for row in await self._run("SELECT name FROM sqlite_master WHERE type = 'table'")}

    async def _columns(self, table: str) -> set[str]:
        return {row[1] for row in await self._run(f"PRAGMA table_info({_quote(table)})")}

    async def count(self, table: str) -> int:
        return (await self._run(f"SELECT count(*) FROM {_quote(table)}"))[0][0]

    async def rows(
        self, table: str, columns: Sequence[str], batch: int = BATCH_ROWS
    ) -> AsyncIterator[list[Row]]:
        present = await self._columns(table)
        selected = ", ".join(_quote(c) if c in present else f"NULL AS {_quote(c)}" for c in columns)
        cursor = self._db.execute(f"SELECT {selected} FROM {_quote(table)} ORDER BY id")
        names = list(columns)
        while True:
            async with self._lock:
                chunk = await to_thread.run_sync(cursor.fetchmany, batch)
            if not chunk:
                return
            yield [dict(zip(names, values, strict=True)) for values in chunk]

    async def close(self) -> None:
        self._db.close()


class PostgresSource:
    """The legacy app's PostgreSQL copy, read in one read-only repeatable-read snapshot."""

    def __init__(self, conn: asyncpg.Connection, url: str) -> None:
        self._conn = conn
        host = url.split("@")[-1]  # never the password
        self.description = f"PostgreSQL {host}"

    @classmethod
    async def connect(cls, url: str) -> "PostgresSource":
        try:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        except (OSError, asyncpg.PostgresError) as exc:
            raise SourceError(f"cannot connect to the legacy PostgreSQL database: {exc}") from None
        return cls(conn, url)

    async def tables(self) -> set[str]:
        rows = await self._conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {row[0] for row in rows}

    async def count(self, table: str) -> int:
        return await self._conn.fetchval(f"SELECT count(*) FROM {_quote(table)}")

    async def rows(
        self, table: str, columns: Sequence[str], batch: int = BATCH_ROWS
    ) -> AsyncIterator[list[Row]]:
        present = {
            row[0]
            for row in await self._conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = $1",
                table,
            )
        }
        selected = ", ".join(_quote(c) if c in present else f"NULL AS {_quote(c)}" for c in columns)
        async with self._conn.transaction(readonly=True, isolation="repeatable_read"):
            cursor = await self._conn.cursor(f"SELECT {selected} FROM {_quote(table)} ORDER BY id")
            while chunk := await cursor.fetch(batch):
                yield [dict(row) for row in chunk]

    async def close(self) -> None:
        await self._conn.close()


async def open_source(spec: str) -> LegacySource:
    """``spec`` is a path to the SQLite file or a ``postgresql://`` URL."""
    if spec.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
        source: LegacySource = await PostgresSource.connect(spec)
    else:
        path = Path(spec)
        if not await anyio.Path(path).is_file():
            raise SourceError(f"no legacy database at {spec}")
        source = SqliteSource(path)
    if "users" not in await source.tables():
        description = source.description
        await source.close()
        raise SourceError(f"{description} has no users table: not a legacy Personal AI Agent database")
    return source
