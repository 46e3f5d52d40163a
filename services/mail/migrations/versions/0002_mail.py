"""Mail tables with row-level security, and the few cross-user queries the worker needs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "mail"
TZ = sa.DateTime(timezone=True)
CURRENT_USER = "nullif(current_setting('app.user_id', true), '')::uuid"
TABLES = ("email_accounts", "oauth_sessions", "sync_runs", "emails", "email_attachments")
ACTIVE_RUN = "state IN ('queued', 'running')"


def _owned(name: str, *columns: sa.Column | sa.Constraint) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("owner_id", sa.Uuid, nullable=False),
        *columns,
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        schema=S,
    )


def _parent(table: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"{S}.{table}.id", ondelete="CASCADE")


def upgrade() -> None:
    _owned(
        "email_accounts",
        sa.Column("provider", sa.String(20), nullable=False, server_default="gmail"),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("sync_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("last_sync_at", TZ),
        sa.Column("last_error", sa.Text),
        sa.Column("history_id", sa.String(40)),
        sa.Column("access_token", sa.Text, nullable=False),
        sa.Column("refresh_token", sa.Text),
        sa.Column("token_expires_at", TZ, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("owner_id", "address", name="uq_email_accounts_owner_address"),
        sa.CheckConstraint(
            "status IN ('active', 'syncing', 'needs_reauth', 'error')", name="ck_email_accounts_status"
        ),
    )
    _owned(
        "oauth_sessions",
        sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("code_verifier", sa.Text, nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ),
    )
    _owned(
        "sync_runs",
        sa.Column("account_id", sa.Uuid, _parent("email_accounts"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False, server_default="queued"),
        sa.Column("mode", sa.String(20)),
        sa.Column("processed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed')", name="ck_sync_runs_state"
        ),
    )
    op.create_index("ix_sync_runs_account_created", "sync_runs", ["account_id", "created_at"], schema=S)
    # One sync per account at a time: a second request finds the running one.
    op.create_index(
        "uq_sync_runs_one_active",
        "sync_runs",
        ["account_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text(ACTIVE_RUN),
    )
    _owned(
        "emails",
        sa.Column("account_id", sa.Uuid, _parent("email_accounts"), nullable=False),
        sa.Column("gmail_id", sa.String(64), nullable=False),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("sender_name", sa.Text),
        sa.Column("sender_address", sa.Text),
        sa.Column("to_addresses", JSONB),
        sa.Column("cc_addresses", JSONB),
        sa.Column("bcc_addresses", JSONB),
        sa.Column("sent_at", TZ),
        sa.Column("labels", JSONB),
        sa.Column("is_read", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("is_important", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("email_type", sa.String(20), nullable=False, server_default="generic"),
        sa.Column("snippet", sa.Text, nullable=False, server_default=""),
        sa.Column("body_text", sa.Text, nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("is_malformed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("defects", JSONB),
        sa.Column("indexed_at", TZ),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        # Upserts by (account, Gmail id): a retried sync never stores a message twice.
        sa.UniqueConstraint("account_id", "gmail_id", name="uq_emails_account_gmail_id"),
    )
    op.create_index("ix_emails_owner_sent", "emails", ["owner_id", sa.text("sent_at DESC")], schema=S)
    op.create_index(
        "ix_emails_to_index",
        "emails",
        ["account_id"],
        schema=S,
        postgresql_where=sa.text("indexed_at IS NULL"),
    )
    _owned(
        "email_attachments",
        sa.Column("email_id", sa.Uuid, _parent("emails"), nullable=False),
        sa.Column("part_index", sa.Integer, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("mime_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("stored", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("index_note", sa.Text),
        sa.UniqueConstraint("email_id", "part_index", name="uq_email_attachments_part"),
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE {S}.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {S}.{table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_owner ON {S}.{table} "
            f"USING (owner_id = {CURRENT_USER}) WITH CHECK (owner_id = {CURRENT_USER})"
        )
    # Definer-rights functions are the only ways past the policies; each returns ids only,
    # except the OAuth callback's, which must find a consent attempt before knowing its user.
    _function(
        "claim_oauth_session(state text)",
        "TABLE (id uuid, owner_id uuid, code_verifier text, redirect_uri text, expired boolean)",
        "VOLATILE",
        f"""
        UPDATE {S}.oauth_sessions o SET used_at = now()
        WHERE o.state_hash = encode(sha256(convert_to(state, 'UTF8')), 'hex') AND o.used_at IS NULL
        RETURNING o.id, o.owner_id, o.code_verifier, o.redirect_uri, o.expires_at < now()
        """,
    )
    _function(
        "accounts_due_for_sync(interval_seconds integer)",
        "TABLE (account_id uuid, owner_id uuid)",
        "STABLE",
        f"""
        SELECT a.id, a.owner_id FROM {S}.email_accounts a
        WHERE a.sync_enabled AND a.status IN ('active', 'error')
          AND (a.last_sync_at IS NULL OR a.last_sync_at < now() - make_interval(secs => interval_seconds))
          AND NOT EXISTS (SELECT 1 FROM {S}.sync_runs r WHERE r.account_id = a.id AND r.{ACTIVE_RUN})
        """,
    )
    _function(
        "syncs_needing_work(stale_seconds integer)",
        "TABLE (run_id uuid, account_id uuid, owner_id uuid)",
        "STABLE",
        f"""
        SELECT r.id, r.account_id, r.owner_id FROM {S}.sync_runs r
        WHERE r.{ACTIVE_RUN} AND r.updated_at < now() - make_interval(secs => stale_seconds)
        """,
    )
    _function(
        "accounts_needing_index()",
        "TABLE (account_id uuid, owner_id uuid)",
        "STABLE",
        # An account still syncing is left alone: its sync enqueues the embedding when done.
        f"""
        SELECT DISTINCT e.account_id, e.owner_id FROM {S}.emails e
        WHERE e.indexed_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM {S}.sync_runs r WHERE r.account_id = e.account_id AND r.{ACTIVE_RUN})
        """,
    )


def _function(signature: str, returns: str, volatility: str, body: str) -> None:
    op.execute(
        f"CREATE FUNCTION {S}.{signature} RETURNS {returns} "
        f"LANGUAGE sql {volatility} SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
        f"AS $$ {body} $$"
    )
    op.execute(f"REVOKE ALL ON FUNCTION {S}.{signature.split('(')[0]} FROM PUBLIC")


def downgrade() -> None:
    for signature in (
        "claim_oauth_session(text)",
        "accounts_due_for_sync(integer)",
        "syncs_needing_work(integer)",
        "accounts_needing_index()",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {S}.{signature}")
    for table in reversed(TABLES):
        op.drop_table(table, schema=S)
