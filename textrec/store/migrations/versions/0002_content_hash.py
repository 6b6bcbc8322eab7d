"""Add documents.content_hash: SHA-256 of the text, to find identical texts at once.

Existing documents are backfilled from their text, in batches, inside the migration's
transaction: an upgrade either completes or leaves the database as it was.

Revision ID: 0002
Revises: 0001
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
    conn = op.get_bind()
    docs = sa.table(
        "documents",
        sa.column("id", sa.BigInteger),
        sa.column("text", sa.Text),
        sa.column("content_hash", sa.String(64)),
    )
    last = -(1 << 62)
    while True:
        rows = conn.execute(
            sa.select(docs.c.id, docs.c.text)
            .where(docs.c.id > last)
            .order_by(docs.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        conn.execute(
            docs.update()
            .where(docs.c.id == sa.bindparam("doc_id"))
            .values(content_hash=sa.bindparam("h")),
            [{"doc_id": i, "h": hashlib.sha256(t.encode("utf-8")).hexdigest()} for i, t in rows],
        )
        last = rows[-1][0]
    op.create_index("ix_documents_content_hash", "documents", ["content_hash"])


def downgrade() -> None:
    op.drop_index("ix_documents_content_hash", "documents")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("content_hash")
