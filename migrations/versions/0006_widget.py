"""support widget: publishable keys, the bot's widget settings, handoffs to a person

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="secret")
        )
        batch.add_column(sa.Column("publishable_value", sa.String(length=100), nullable=True))
    with op.batch_alter_table("bots") as batch:
        batch.add_column(sa.Column("widget", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column(
            "bot_id",
            sa.String(length=40),
            sa.ForeignKey("bots.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("conversation_id", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("page_url", sa.String(length=2000), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_handoffs_bot_id", "handoffs", ["bot_id"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_bot_id", table_name="handoffs")
    op.drop_table("handoffs")
    with op.batch_alter_table("bots") as batch:
        batch.drop_column("widget")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("publishable_value")
        batch.drop_column("kind")
