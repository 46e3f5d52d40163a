"""Documents table with row-level security, and the one cross-user query the worker needs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "documents"
TZ = sa.DateTime(timezone=True)
CURRENT_USER = "nullif(current_setting('app.user_id', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("owner_id", sa.Uuid, nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.String(4000)),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("mime_type", sa.String(120), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("category", sa.String(20)),
        sa.Column("status", sa.String(20), nullable=False, server_default="queued"),
        sa.Column("progress", sa.Float, nullable=False, server_default="0"),
        sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("page_count", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("deleted_at", TZ),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'ready', 'failed')", name="ck_documents_status"
        ),
        schema=S,
    )
    op.create_index("ix_documents_owner_created", "documents", ["owner_id", "created_at"], schema=S)
    # One live copy of a file per user; deleted rows (awaiting cleanup) do not count.
    op.create_index(
        "uq_documents_owner_sha256",
        "documents",
        ["owner_id", "sha256"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.execute(f"ALTER TABLE {S}.documents ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {S}.documents FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY documents_owner ON {S}.documents "
        f"USING (owner_id = {CURRENT_USER}) WITH CHECK (owner_id = {CURRENT_USER})"
    )
    # The worker's recovery cron must find stuck documents of every user. This definer-rights
    # function is the only way past the policy, and it returns ids and owners, nothing else.
    op.execute(
        f"""
        CREATE FUNCTION {S}.documents_needing_work(stale_seconds integer)
        RETURNS TABLE (id uuid, owner_id uuid, deleted boolean)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT d.id, d.owner_id, d.deleted_at IS NOT NULL
            FROM {S}.documents d
            WHERE d.updated_at < now() - make_interval(secs => stale_seconds)
              AND (d.deleted_at IS NOT NULL OR d.status IN ('queued', 'processing'))
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {S}.documents_needing_work(integer) FROM PUBLIC")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {S}.documents_needing_work(integer)")
    op.drop_table("documents", schema=S)
