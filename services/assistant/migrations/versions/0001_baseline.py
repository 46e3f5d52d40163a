"""Baseline: the assistant schema exists (made by `make migrate`) with its version table.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
