"""The fleet's generation counter: one row that every change to what the director reads
(releases, variants, registry aliases and versions) bumps, through triggers in the database, so
each server process may cache that state and re-read it only when the counter moved, whichever
process or command (``edgeloop registry``, the admin API) made the change.

Revision ID: 0010_fleet_generation
Revises: 0009_rollout_controls
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_fleet_generation"
down_revision = "0009_rollout_controls"
branch_labels = None
depends_on = None

# the tables the director's fleet state is read from (edgeloop.fleet._store.fleet_state)
WATCHED = ("fleet_releases", "fleet_release_variants", "aliases", "model_versions", "models")
_BUMP = "UPDATE fleet_generation SET value = value + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "fleet_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_generation")),
    )
    op.execute("INSERT INTO fleet_generation (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION edgeloop_fleet_bump() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for table in WATCHED:
            op.execute(
                f"CREATE TRIGGER {table}_generation AFTER INSERT OR UPDATE OR DELETE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION edgeloop_fleet_bump()"
            )
        return
    for table in WATCHED:
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_generation_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_generation ON {table}")
        op.execute("DROP FUNCTION IF EXISTS edgeloop_fleet_bump()")
    else:
        for table in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_generation_{event}")
    op.drop_table("fleet_generation")
