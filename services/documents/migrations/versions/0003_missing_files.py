"""A document may have no file (imported from a legacy database whose upload is gone): its
hash is then NULL, and the one-live-copy-per-file index ignores it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "documents"


def upgrade() -> None:
    op.alter_column("documents", "sha256", nullable=True, schema=S)


def downgrade() -> None:
    op.execute(f"DELETE FROM {S}.documents WHERE sha256 IS NULL")
    op.alter_column("documents", "sha256", nullable=False, schema=S)
