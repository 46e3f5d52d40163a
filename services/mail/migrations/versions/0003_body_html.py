"""Emails keep their HTML body too (the legacy app stored it; imported mail keeps every column).

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

S = "mail"


def upgrade() -> None:
    op.add_column("emails", sa.Column("body_html", sa.Text), schema=S)


def downgrade() -> None:
    op.drop_column("emails", "body_html", schema=S)
