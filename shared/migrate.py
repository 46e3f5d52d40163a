"""``make migrate``: create the database, schemas and roles, then run every service's migrations.

Connects with the admin DSN (``PAI_DATABASE_URL``). Each service gets one schema and one
login role with data rights on that schema only; tables are owned by the admin role, so a
service role can neither change the schema nor bypass row-level security. Idempotent.
"""

import argparse
import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from pydantic import Field
from sqlalchemy.engine import make_url

from shared.config import CommonSettings, service_database_url
from shared.registry import WITH_SCHEMA

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


class MigrateSettings(CommonSettings):
    """The admin DSN (``PAI_DATABASE_URL``) and, for each service with a schema in the registry,
    its own DSN ``PAI_<NAME>_DATABASE_URL`` (role name and password), read from the environment."""

    service_database_urls: dict[str, str] = Field(default_factory=dict, exclude=True)

    def model_post_init(self, _context: object) -> None:
        for service in WITH_SCHEMA:
            explicit = os.environ.get(service.database_url_setting)
            if explicit and service.name not in self.service_database_urls:
                self.service_database_urls[service.name] = explicit


@dataclass(frozen=True)
class ServiceSchema:
    schema: str
    role: str
    password: str | None

    @property
    def migrations(self) -> Path:
        return SERVICES_DIR / self.schema / "migrations"


def service_schemas(settings: MigrateSettings) -> list[ServiceSchema]:
    """Role names and passwords come from each service's own DSN, the single source of truth."""
    schemas = []
    for service in WITH_SCHEMA:
        explicit = settings.service_database_urls.get(service.name)
        url = make_url(service_database_url(settings.database_url, service.role, explicit))
        schema = service.schema or service.name
        schemas.append(ServiceSchema(schema=schema, role=url.username or service.role, password=url.password))
    return schemas


def _plain_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def ensure_database(admin_url: str) -> bool:
    """Create the target database if missing; True when it was created."""
    name = make_url(admin_url).database
    conn = await asyncpg.connect(_plain_dsn(admin_url, "postgres"))
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


async def _quoted(conn: asyncpg.Connection, func: str, value: str) -> str:
    return await conn.fetchval(f"SELECT {func}($1)", value)


async def bootstrap(admin_url: str, services: list[ServiceSchema]) -> None:
    """Schemas, roles and grants, before migrations (default privileges cover new tables)."""
    conn = await asyncpg.connect(_plain_dsn(admin_url))
    try:
        database = await _quoted(conn, "quote_ident", make_url(admin_url).database)
        await conn.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
        for svc in services:
            role = await _quoted(conn, "quote_ident", svc.role)
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", svc.role)
            if not exists:
                await conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
            if svc.password:
                password = await _quoted(conn, "quote_literal", svc.password)
                await conn.execute(f"ALTER ROLE {role} PASSWORD {password}")
            await conn.execute(f"ALTER ROLE {role} SET search_path = {svc.schema}")
            await conn.execute(f"GRANT CONNECT ON DATABASE {database} TO {role}")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {svc.schema}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {svc.schema} FROM PUBLIC")
            await conn.execute(f"GRANT USAGE ON SCHEMA {svc.schema} TO {role}")
            await conn.execute(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {svc.schema} "
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
            )
            await conn.execute(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {svc.schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}"
            )
    finally:
        await conn.close()


async def finalize_grants(admin_url: str, services: list[ServiceSchema]) -> None:
    """Grant on what exists (tables made before the defaults) and keep the version table read-only."""
    conn = await asyncpg.connect(_plain_dsn(admin_url))
    try:
        for svc in services:
            role = await _quoted(conn, "quote_ident", svc.role)
            await conn.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {svc.schema} TO {role}"
            )
            await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {svc.schema} TO {role}")
            await conn.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {svc.schema} TO {role}")
            await conn.execute(f"REVOKE INSERT, UPDATE, DELETE ON {svc.schema}.alembic_version FROM {role}")
    finally:
        await conn.close()


def alembic_config(admin_url: str, svc: ServiceSchema) -> Config:
    config = Config()
    config.set_main_option("script_location", str(svc.migrations))
    config.set_main_option("sqlalchemy.url", admin_url.replace("%", "%%"))
    return config


def upgrade_all(admin_url: str, services: list[ServiceSchema]) -> None:
    for svc in services:
        command.upgrade(alembic_config(admin_url, svc), "head")


def migrate(settings: MigrateSettings, *, create_database: bool = False) -> None:
    services = service_schemas(settings)
    if create_database:
        asyncio.run(ensure_database(settings.database_url))
    asyncio.run(bootstrap(settings.database_url, services))
    upgrade_all(settings.database_url, services)
    asyncio.run(finalize_grants(settings.database_url, services))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--create-database", action="store_true", help="create it if missing")
    args = parser.parse_args()
    migrate(MigrateSettings(), create_database=args.create_database)
    print("migrations complete")


if __name__ == "__main__":
    main()
