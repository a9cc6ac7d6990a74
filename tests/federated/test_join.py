"""Joining a run from a device: the eligibility policy and the node key bound to the device's
enrolled identity (device-only: no Flower, no torch)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeloop.errors import InputError, IntegrityError
from edgeloop.federated.device import (
    JoinPolicy,
    bind_node_key,
    eligible,
    node_key,
    node_key_openssh,
    node_public_openssh,
    verify_node_binding,
)

IDLE = {"power": "mains", "network": "unmetered"}


@pytest.mark.parametrize(("labels", "labelled", "recent", "why"), [
    (IDLE, 100, 0, "eligible"),
    ({"network": "unmetered"}, 100, 0, "not powered"),
    ({"power": "battery", "network": "unmetered"}, 100, 0, "not powered"),
    ({"power": "mains"}, 100, 0, "metered"),
    ({"power": "mains", "network": "metered"}, 100, 0, "metered"),
    (IDLE, 100, 50, "busy"),
    (IDLE, 100, float("nan"), "busy"),
    (IDLE, 49, 0, "too few labelled"),
])
def test_eligibility(labels: dict[str, str], labelled: int, recent: float, why: str) -> None:
    ok, reason = eligible(JoinPolicy(), labels, labelled=labelled, recent_requests=recent)
    assert ok == (why == "eligible") and reason.startswith(why)


def test_a_looser_policy() -> None:
    policy = JoinPolicy(min_labels=10, require_mains=False, allow_metered=True)
    assert eligible(policy, {}, labelled=10, recent_requests=5)[0]
    with pytest.raises(InputError, match="min_labels"):
        JoinPolicy(min_labels=0)


def test_node_key_is_derived_from_the_device_key_and_flower_reads_it() -> None:
    device = Ed25519PrivateKey.generate()
    a, b = node_key(device), node_key(device)
    assert a.private_numbers() == b.private_numbers()  # no storage of its own
    assert isinstance(a.curve, ec.SECP384R1)
    assert node_key(Ed25519PrivateKey.generate()).private_numbers() != a.private_numbers()
    # what flower-supernode --auth-supernode-private-key does with the file
    loaded = serialization.load_ssh_private_key(node_key_openssh(a), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert node_public_openssh(loaded) == node_public_openssh(a)
    assert node_public_openssh(a).startswith("ecdsa-sha2-nistp384 ")


def test_binding_verifies_only_for_its_device_and_key() -> None:
    device, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    binding = bind_node_key(device, "dev-1")
    assert verify_node_binding(device.public_key(), binding, "dev-1") == \
        node_public_openssh(node_key(device))
    with pytest.raises(IntegrityError):  # another device's enrolled key
        verify_node_binding(other.public_key(), binding, "dev-1")
    with pytest.raises(IntegrityError):  # claimed for another device id
        verify_node_binding(device.public_key(), binding, "dev-2")
    swapped = {**binding, "node_public_key": node_public_openssh(node_key(other))}
    with pytest.raises(IntegrityError):  # someone else's node key under this signature
        verify_node_binding(device.public_key(), swapped, "dev-1")


@pytest.mark.parametrize("hostile", [
    None, [], "x", {"device_id": "dev-1"}, {"device_id": "dev-1", "node_public_key": 3,
                                            "signature": "00"},
    {"device_id": "dev-1", "node_public_key": "ssh-ed25519 AAAA", "signature": "zz"},
    {"device_id": "dev-1", "node_public_key": "k" * 5000, "signature": "00"},
])
def test_hostile_bindings_are_refused(hostile: object) -> None:
    with pytest.raises(IntegrityError):
        verify_node_binding(Ed25519PrivateKey.generate().public_key(), hostile, "dev-1")


def test_a_signed_non_p384_key_is_refused() -> None:
    device = Ed25519PrivateKey.generate()
    from edgeloop.federated.device import _join  # the statement's encoding

    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    sig = device.sign(_join._statement("dev-1", public)).hex()
    with pytest.raises(IntegrityError, match="P-384"):
        verify_node_binding(device.public_key(),
                            {"device_id": "dev-1", "node_public_key": public, "signature": sig},
                            "dev-1")
