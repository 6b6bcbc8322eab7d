"""The first schema: documents, DF snapshots, fingerprints, meta.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "df_snapshots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("n_docs", sa.BigInteger, nullable=False),
        sa.Column("n_terms", sa.BigInteger, nullable=False),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "documents",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(512), nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("terms", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "textrec_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "fingerprints",
        sa.Column(
            "snapshot_id",
            sa.String(64),
            sa.ForeignKey("df_snapshots.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "document_id",
            sa.BigInteger,
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("fp", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_fingerprints_document_id", "fingerprints", ["document_id"])


def downgrade() -> None:
    op.drop_index("ix_fingerprints_document_id", "fingerprints")
    op.drop_table("fingerprints")
    op.drop_table("textrec_meta")
    op.drop_table("documents")
    op.drop_table("df_snapshots")
