"""Conversations, queries and sources, each under row-level security on ``owner_id``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "assistant"
TZ = sa.DateTime(timezone=True)
CURRENT_USER = "nullif(current_setting('app.user_id', true), '')::uuid"
TABLES = ("conversations", "queries", "sources")


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("owner_id", sa.Uuid, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    op.create_index("ix_conversations_owner_updated", "conversations", ["owner_id", "updated_at"], schema=S)
    op.create_table(
        "queries",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("owner_id", sa.Uuid, nullable=False),
        sa.Column(
            "conversation_id",
            sa.Uuid,
            sa.ForeignKey(f"{S}.conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("standalone_question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(20), nullable=False, server_default="incomplete"),
        sa.Column("unsupported_sentences", sa.Integer, nullable=False, server_default="0"),
        sa.Column("warnings", JSONB, nullable=False, server_default="[]"),
        sa.Column("model", sa.String(200)),
        sa.Column("retrieval_ms", sa.Float),
        sa.Column("first_token_ms", sa.Float),
        sa.Column("total_ms", sa.Float),
        sa.Column("feedback_rating", sa.String(10)),
        sa.Column("feedback_comment", sa.Text),
        sa.Column("feedback_at", TZ),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('complete', 'incomplete', 'no_sources', 'failed')", name="ck_queries_status"
        ),
        sa.CheckConstraint("feedback_rating IN ('up', 'down')", name="ck_queries_feedback_rating"),
        schema=S,
    )
    op.create_index("ix_queries_owner_created", "queries", ["owner_id", "created_at"], schema=S)
    op.create_index("ix_queries_conversation", "queries", ["conversation_id", "created_at"], schema=S)
    op.create_table(
        "sources",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("owner_id", sa.Uuid, nullable=False),
        sa.Column("query_id", sa.Uuid, sa.ForeignKey(f"{S}.queries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("chunk_id", sa.Uuid, nullable=False),
        sa.Column("document_id", sa.Uuid),
        sa.Column("email_id", sa.Uuid),
        sa.Column("attachment_id", sa.Uuid),
        sa.Column("account_id", sa.Uuid),
        sa.Column("title", sa.Text),
        sa.Column("subject", sa.Text),
        sa.Column("sender", sa.Text),
        sa.Column("sent_at", TZ),
        sa.Column("page", sa.Integer),
        sa.Column("start", sa.Integer),
        sa.Column("end", sa.Integer),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("quote", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("cited", sa.Integer),
        sa.UniqueConstraint("query_id", "n", name="uq_sources_query_n"),
        sa.CheckConstraint("kind IN ('document', 'email', 'attachment')", name="ck_sources_kind"),
        schema=S,
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE {S}.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {S}.{table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_owner ON {S}.{table} "
            f"USING (owner_id = {CURRENT_USER}) WITH CHECK (owner_id = {CURRENT_USER})"
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table, schema=S)
