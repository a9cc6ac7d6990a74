"""Attack 1 of issue 13: enrollment must not teach a device whom to trust.

A man-in-the-middle between a device and the real fleet server swaps the TUF root and the
director key in the enrollment answer. A provisioned device refuses the answer and stores
nothing; a legitimate rotation of the director key and of the TUF root since the device was
provisioned is followed (through TUF's signed chain), without reflashing the device.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from e2e.conftest import FleetServer
from edgeloop.agent import Agent
from edgeloop.bundle import generate_signing_key, key_id, save_private_key
from edgeloop.hardware import load_target
from edgeloop.protocol import public_hex
from edgeloop.update import Repository, init_keys, rotate_key
from security._proxy import json_tamper


@pytest.fixture
def server(tmp_path: Path):
    srv = FleetServer(tmp_path / "data", f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path)
    srv.start()
    yield srv
    srv.stop()


def _attacker(tmp_path: Path) -> tuple[dict, dict, str]:
    """The attacker's own TUF root (naming its own director key) and that director key."""
    director = generate_signing_key()
    keys = init_keys(tmp_path / "attacker-keys", director_public_key=director.public_key())
    key = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public_hex(director)}}
    return json.loads(keys.root_bytes()), key, key_id(director.public_key())


def _agent(state: Path, **kw) -> Agent:
    return Agent(
        kw.pop("url", None),
        state,
        profile=load_target("rpi4"),
        poll_interval_s=1.0,
        confirm_after_s=0.0,
        **kw,
    )


@pytest.mark.slow
def test_mitm_swapping_root_and_director_key_at_enrollment_is_refused(server, mitm, tmp_path):
    server.publish("kws", 1, scale=1.0)
    root, director, director_id = _attacker(tmp_path)
    proxy = mitm(server.url)
    swap = json_tamper(
        lambda d: {**d, "tuf_root": root, "director_key": director, "director_keyid": director_id}
    )
    proxy.tamper("/v1/enroll", swap)
    provisioned = dataclasses.replace(server.provision(), server_url=proxy.url)
    pinned_root = (provisioned.root_bytes(), json.dumps(provisioned.tuf_root))

    agent = _agent(tmp_path / "dev", provisioning=provisioned)
    agent.poll_sync()

    assert agent.identity is None and agent.model is None  # not enrolled, nothing installed
    assert "TrustError" in (agent.poll_error or "") and "refused" in (agent.poll_error or "")
    assert not (agent.store.root / "identity.json").exists()
    held = (agent.store.tuf_dir / "root.json").read_bytes()
    assert held == pinned_root[0]  # the pinned root is still the one trusted


@pytest.mark.slow
def test_the_same_mitm_fools_a_device_on_trust_on_first_use(server, mitm, tmp_path):
    """Why provisioning matters: the attack above works against TOFU (the test can fail)."""
    server.publish("kws", 1, scale=1.0)
    root, director, director_id = _attacker(tmp_path)
    proxy = mitm(server.url)
    proxy.tamper(
        "/v1/enroll",
        json_tamper(lambda d: {**d, "tuf_root": root, "director_key": director}),
    )

    agent = _agent(
        tmp_path / "dev", url=proxy.url, enroll_token=server.token(), insecure_first_use=True
    )
    agent.poll_sync()

    assert agent.identity is not None  # enrolled, believing the attacker's root
    assert json.loads((agent.store.tuf_dir / "root.json").read_bytes()) == root


@pytest.mark.slow
def test_mitm_swapping_only_the_director_key_is_refused(server, mitm, tmp_path):
    _, director, director_id = _attacker(tmp_path)
    proxy = mitm(server.url)
    proxy.tamper(
        "/v1/enroll",
        json_tamper(lambda d: {**d, "director_key": director, "director_keyid": director_id}),
    )
    agent = _agent(
        tmp_path / "dev", provisioning=dataclasses.replace(server.provision(), server_url=proxy.url)
    )

    agent.poll_sync()

    assert agent.identity is None
    assert f"names director key {director_id[:16]}" in (agent.poll_error or "")


def test_without_provisioning_or_tofu_the_agent_does_not_enroll(server, tmp_path):
    agent = _agent(tmp_path / "dev", url=server.url, enroll_token=server.token())

    agent.poll_sync()

    assert agent.identity is None and "no provisioned trust" in (agent.poll_error or "")


@pytest.mark.slow
def test_director_key_and_root_rotate_without_reflashing(server, tmp_path):
    """A device provisioned before both rotations enrolls after them, and a device enrolled
    before them accepts assignments from the new director key: both learn it from the root."""
    server.publish("kws", 1, scale=1.0)
    old_device = _agent(tmp_path / "old", provisioning=server.provision())
    old_device.poll_sync()
    assert old_device.model is not None and old_device.model.version == 1
    late_image = server.provision()  # written before the rotation, flashed later
    old_director = next(iter(old_device.director_keys()))  # keyed by key id

    server.stop()  # after a compromise: a new director key, a new root key
    save_private_key(server.data / "director.pem", generate_signing_key())
    rotate_key(server.data / "keys", "root")
    Repository(server.data / "tuf", server.data / "keys").resign()
    server.start()  # names the new director key in root version 3 (root v2: the new root key)
    server.publish("kws", 2, scale=2.0)

    late = _agent(tmp_path / "late", provisioning=late_image)
    late.poll_sync()
    old_device.poll_sync()

    assert late.poll_error is None and late.model is not None and late.model.version == 2
    assert old_device.poll_error is None and old_device.model.version == 2
    new_keys = set(old_device.director_keys())
    assert old_director not in new_keys and len(new_keys) == 1
    assert old_device.trust().root_version == 3


def test_provision_refuses_a_pinned_ca_with_plain_http_and_trust_needs_the_admin(server, test_ca):
    import httpx

    from edgeloop.client import AdminClient
    from edgeloop.errors import InputError

    admin = AdminClient(server.url, (server.data / "admin-token").read_text())

    with pytest.raises(InputError, match="a CA is pinned, so expected https://"):
        admin.provision(ca_pem=test_ca.ca_pem.read_text())
    assert httpx.get(server.url + "/v1/admin/trust").status_code == 401
    trust = admin.trust()
    assert trust["director_keyid"] in trust["tuf_root"]["signed"]["x-edgeloop-director"]["keys"]
