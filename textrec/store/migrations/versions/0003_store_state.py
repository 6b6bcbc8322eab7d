"""Add textrec_state: the store's identity and generation, and record the store's scheme.

Derived files (index files, later models) record the identity and generation they were made
at; this revision gives an existing store a new identity at generation 0, so every file made
before it counts as behind the store (it is caught up or rebuilt at the next start-up). The
store's scheme is recorded in textrec_meta from its current snapshot, when it has one.

Revision ID: 0003
Revises: 0002
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    state = op.create_table(
        "textrec_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("identity", sa.String(32), nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("write_tag", sa.String(16), nullable=False),
    )
    op.bulk_insert(
        state,
        [{"id": 1, "identity": secrets.token_hex(16), "generation": 0, "write_tag": "0" * 16}],
    )
    conn = op.get_bind()
    meta = sa.table("textrec_meta", sa.column("key", sa.String(64)), sa.column("value", sa.Text))
    snapshots = sa.table(
        "df_snapshots", sa.column("id", sa.String(64)), sa.column("scheme", sa.String(64))
    )
    current = conn.execute(
        sa.select(meta.c.value).where(meta.c.key == "current_snapshot")
    ).scalar_one_or_none()
    if current is not None:
        scheme = conn.execute(
            sa.select(snapshots.c.scheme).where(snapshots.c.id == current)
        ).scalar_one_or_none()
        if scheme is not None:
            conn.execute(sa.insert(meta).values(key="scheme", value=scheme))


def downgrade() -> None:
    op.drop_table("textrec_state")
    conn = op.get_bind()
    meta = sa.table("textrec_meta", sa.column("key", sa.String(64)))
    conn.execute(sa.delete(meta).where(meta.c.key == "scheme"))
