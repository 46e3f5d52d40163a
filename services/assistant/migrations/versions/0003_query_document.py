"""A query can name the document it was asked about (the legacy app's questions were).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "assistant"


def upgrade() -> None:
    op.add_column("queries", sa.Column("document_id", sa.Uuid), schema=S)


def downgrade() -> None:
    op.drop_column("queries", "document_id", schema=S)
