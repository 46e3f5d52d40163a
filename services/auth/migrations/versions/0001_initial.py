"""Users, refresh-token families, admin audit log, purge outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "auth"
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("username", sa.String(50), nullable=False),
        sa.Column("password_hash", sa.String, nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    op.create_index("uq_users_email", "users", [sa.text("lower(email)")], unique=True, schema=S)
    op.create_index("uq_users_username", "users", [sa.text("lower(username)")], unique=True, schema=S)

    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("family_id", sa.Uuid, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ),
        sa.Column("revoked_at", TZ),
        schema=S,
    )
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"], schema=S)
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"], schema=S)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("actor_id", sa.Uuid),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_user_id", sa.Uuid),
        sa.Column("details", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"], schema=S)

    op.create_table(
        "purge_requests",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("enqueued_at", TZ),
        sa.Column("completed_at", TZ),
        sa.UniqueConstraint("user_id", "service", name="uq_purge_requests_user_service"),
        schema=S,
    )
    op.create_index("ix_purge_requests_user_id", "purge_requests", ["user_id"], schema=S)


def downgrade() -> None:
    for table in ("purge_requests", "audit_log", "refresh_tokens", "users"):
        op.drop_table(table, schema=S)
