from services.assistant.models import SCHEMA, metadata
from shared.alembic_env import run_migrations

run_migrations(metadata, SCHEMA)
