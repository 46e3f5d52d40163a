"""The body of every service's Alembic ``env.py``: async, online, confined to one schema."""

import asyncio

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import asyncpg_url


def run_migrations(metadata: MetaData, schema: str) -> None:
    """Run pending migrations; the version table lives inside the service's own schema."""
    config = context.config

    def include_object(obj, name, type_, reflected, compare_to) -> bool:
        table_schema = getattr(obj, "schema", None) if type_ == "table" else None
        return type_ != "table" or table_schema == schema

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(asyncpg_url(config.get_main_option("sqlalchemy.url")))
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
                await connection.commit()
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        raise SystemExit("offline (SQL script) migrations are not supported; run `make migrate`")
    asyncio.run(main())
