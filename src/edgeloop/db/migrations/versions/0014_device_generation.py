"""Device and rollout changes bump the fleet's generation counter: a device's revocation, new
signing key, or a change of the model, labels or profile the director reads, and every write
to ``fleet_rollouts`` (a rollout started, moved on, paused, its controls changed), so each
server process may keep what a signed request needs of its device (public key, revoked or not,
model, labels, profile) and each model's newest rollout, and re-read them only when the
counter moved, whichever process or command made the change. A check-in's own writes (last
seen, installed, health) leave the counter alone.

Revision ID: 0014_device_generation
Revises: 0013_autoheal_runs
"""

from __future__ import annotations

from alembic import op

revision = "0014_device_generation"
down_revision = "0013_autoheal_runs"
branch_labels = None
depends_on = None

_BUMP = "UPDATE fleet_generation SET value = value + 1 WHERE id = 1"
# the columns a process keeps per device (edgeloop.fleet._signed.DeviceKeys)
_KEPT = ("signing_key", "revoked", "model", "labels", "profile")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # JSON has no equality operator on PostgreSQL: compare the stored text
        changed = " OR ".join(
            f"OLD.{c}::text IS DISTINCT FROM NEW.{c}::text"
            if c in ("labels", "profile")
            else f"OLD.{c} IS DISTINCT FROM NEW.{c}"
            for c in _KEPT
        )
        op.execute(
            "CREATE TRIGGER fleet_devices_generation AFTER UPDATE ON fleet_devices "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION edgeloop_fleet_bump()"
        )
        op.execute(
            "CREATE TRIGGER fleet_devices_generation_delete AFTER DELETE ON fleet_devices "
            "FOR EACH STATEMENT EXECUTE FUNCTION edgeloop_fleet_bump()"
        )
        op.execute(
            "CREATE TRIGGER fleet_rollouts_generation AFTER INSERT OR UPDATE OR DELETE "
            "ON fleet_rollouts FOR EACH STATEMENT EXECUTE FUNCTION edgeloop_fleet_bump()"
        )
        return
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _KEPT)
    op.execute(
        "CREATE TRIGGER fleet_devices_generation_update AFTER UPDATE ON fleet_devices "
        f"WHEN {changed} BEGIN {_BUMP}; END"
    )
    op.execute(
        "CREATE TRIGGER fleet_devices_generation_delete AFTER DELETE ON fleet_devices "
        f"BEGIN {_BUMP}; END"
    )
    for event in ("INSERT", "UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER fleet_rollouts_generation_{event.lower()} AFTER {event} "
            f"ON fleet_rollouts BEGIN {_BUMP}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS fleet_devices_generation ON fleet_devices")
        op.execute("DROP TRIGGER IF EXISTS fleet_devices_generation_delete ON fleet_devices")
        op.execute("DROP TRIGGER IF EXISTS fleet_rollouts_generation ON fleet_rollouts")
    else:
        op.execute("DROP TRIGGER IF EXISTS fleet_devices_generation_update")
        op.execute("DROP TRIGGER IF EXISTS fleet_devices_generation_delete")
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS fleet_rollouts_generation_{event}")
