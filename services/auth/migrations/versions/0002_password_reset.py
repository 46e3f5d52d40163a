"""Users whose sign-in is refused until an admin sets a new password (imported accounts that
still had a well-known default password).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "auth"


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("password_reset_required", sa.Boolean, nullable=False, server_default=sa.false()),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("users", "password_reset_required", schema=S)
