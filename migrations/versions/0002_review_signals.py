"""review signals: feedback comments, document origins, four-eyes annotations

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("exchanges") as table:
        table.add_column(sa.Column("feedback_comment", sa.Text(), nullable=True))
    with op.batch_alter_table("documents") as table:
        table.add_column(sa.Column("origin", sa.String(length=4096), nullable=True))
    with op.batch_alter_table("annotations") as table:
        table.add_column(
            sa.Column("awaiting_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        table.add_column(sa.Column("created_by", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("annotations") as table:
        table.drop_column("created_by")
        table.drop_column("awaiting_approval")
    with op.batch_alter_table("documents") as table:
        table.drop_column("origin")
    with op.batch_alter_table("exchanges") as table:
        table.drop_column("feedback_comment")
