"""The fleet server's side of deployed federated runs: a device's node key binding is kept only
when its enrolled key signed it; the poll names the open run of the device's cohort."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any as Fleet

from edgeloop.db import FederatedNodeRow, FederatedRunRow, make_engine, read_session, write_session
from edgeloop.federated.device import bind_node_key


def _open_run(fleet: Fleet, run_id: str, cohort: dict[str, str], closed: bool = False) -> None:
    engine = make_engine(fleet.settings.db_url)
    now = datetime.now(timezone.utc)
    with write_session(engine) as s:
        s.add(FederatedRunRow(id=run_id, superlink="127.0.0.1:9093", cohort=cohort,
                              opened_at=now, closed_at=now if closed else None))
    engine.dispose()


def test_a_binding_is_kept_only_when_the_enrolled_key_signed_it(fleet: Fleet) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    d = fleet.device(labels={"site": "lab"})
    stranger = bind_node_key(Ed25519PrivateKey.generate(), d.device_id)
    assert d.post("/v1/federated/node-key", stranger).status_code == 400
    other = bind_node_key(d.signing, "someone-else")
    assert d.post("/v1/federated/node-key", other).status_code == 400
    assert d.post("/v1/federated/node-key", {"device_id": 1}).status_code == 400
    r = d.post("/v1/federated/node-key", bind_node_key(d.signing, d.device_id))
    assert r.status_code == 200, r.text
    assert r.json()["node_public_key"].startswith("ecdsa-sha2-nistp384 ")
    engine = make_engine(fleet.settings.db_url)
    with read_session(engine) as s:
        assert s.get(FederatedNodeRow, d.device_id) is not None
    engine.dispose()


def test_the_poll_names_the_open_run_of_the_devices_cohort(fleet: Fleet) -> None:
    d = fleet.device(labels={"site": "lab"})
    assert d.post("/v1/federated/poll", {}).json()["run"] is None  # no binding yet
    assert d.post("/v1/federated/node-key",
                  bind_node_key(d.signing, d.device_id)).status_code == 200
    _open_run(fleet, "elsewhere", {"site": "factory"})
    _open_run(fleet, "old", {"site": "lab"}, closed=True)
    assert d.post("/v1/federated/poll", {}).json()["run"] is None
    _open_run(fleet, "now", {"site": "lab"})
    r = d.post("/v1/federated/poll", {})
    assert r.json()["run"] == {"id": "now", "superlink": "127.0.0.1:9093"}
    assert d.post("/v1/federated/poll", []).status_code == 400  # not an object


def test_unsigned_and_revoked_devices_are_refused(fleet: Fleet) -> None:
    d = fleet.device()
    assert fleet.client.post("/v1/federated/poll", json={}).status_code == 401
    r = fleet.client.post(f"/v1/admin/devices/{d.device_id}/revoke", headers=fleet.admin)
    assert r.status_code == 200, r.text
    assert d.post("/v1/federated/poll", {}).status_code == 403


def test_migration_0012_federated_matches_the_tables(db_url: str) -> None:
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from edgeloop.db import FEDERATED_TABLES, Base, upgrade

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) >= FEDERATED_TABLES
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(ctx, Base.metadata)
                    if any(t in repr(d) for t in FEDERATED_TABLES)]
        assert diff == []
    finally:
        engine.dispose()
