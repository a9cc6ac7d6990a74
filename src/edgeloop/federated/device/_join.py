"""Joining a federated run from a device: whether this device should, and the Flower node key
bound to its enrolled identity. No Flower, no torch: ``cryptography`` and the standard library.

**Eligibility** is a device-side policy (:class:`JoinPolicy`): a device takes part only while
it is idle (few inferences in the last minute), on mains power, on an unmetered network, and
holds enough labelled local samples (delayed feedback). What the device knows of its power and
network comes from its labels (``power=mains|battery``, ``network=unmetered|metered``): a
device that does not say is treated as on battery and metered, so it never joins by accident.

**The node key.** Flower's SuperNode authenticates with an elliptic-curve key (OpenSSH format,
a NIST curve). :func:`node_key` derives a P-384 key deterministically from the device's
Ed25519 signing key (HKDF-SHA256, a label naming the purpose), so the node key needs no storage
of its own and changes when the device is re-keyed. :func:`bind_node_key` signs a statement
``{device_id, node_public_key, purpose}`` with the device key; the fleet server checks it with
the public key the device enrolled with (:func:`verify_node_binding`) and registers the node
key with the SuperLink only for enrolled, non-revoked devices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgeloop.errors import InputError, IntegrityError

__all__ = [
    "JoinPolicy",
    "bind_node_key",
    "eligible",
    "node_key",
    "node_key_openssh",
    "node_public_openssh",
    "verify_node_binding",
]

_P384_ORDER = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
                  "581a0db248b0a77aecec196accc52973", 16)
_NODE_KEY_INFO = b"edgeloop flower node key v1"
PURPOSE = "edgeloop-flower-node"
MAX_BINDING_BYTES = 4096


@dataclass(frozen=True)
class JoinPolicy:
    """When a device takes part in a federated run (module docstring)."""

    min_labels: int = 50  # labelled local samples (delayed feedback) needed
    max_recent_requests: int = 5  # inferences in the last minute for the device to count idle
    require_mains: bool = True
    allow_metered: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.min_labels <= 10_000_000:
            raise InputError(f"min_labels={self.min_labels!r}: expected 1..10000000")
        if not 0 <= self.max_recent_requests <= 1_000_000:
            raise InputError(f"max_recent_requests={self.max_recent_requests!r}: "
                             "expected 0..1000000")


def eligible(policy: JoinPolicy, labels: Mapping[str, str], *, labelled: int,
             recent_requests: float) -> tuple[bool, str]:
    """(whether the device joins now, why or why not), from its labels, the labelled samples
    it holds and the inferences it served in the last minute."""
    power = labels.get("power", "battery").lower()
    network = labels.get("network", "metered").lower()
    if policy.require_mains and power != "mains":
        return False, f"not powered (power={power})"
    if not policy.allow_metered and network != "unmetered":
        return False, f"metered network (network={network})"
    if not math.isfinite(recent_requests) or recent_requests > policy.max_recent_requests:
        return False, (f"busy ({recent_requests:g} inferences in the last minute, idle is <= "
                       f"{policy.max_recent_requests})")
    if labelled < policy.min_labels:
        return False, f"too few labelled samples ({labelled} < {policy.min_labels})"
    return True, f"eligible: idle, mains, unmetered, {labelled} labelled samples"


def node_key(signing_key: Ed25519PrivateKey) -> ec.EllipticCurvePrivateKey:
    """The device's Flower node key: P-384, derived from its Ed25519 signing key."""
    seed = signing_key.private_bytes(serialization.Encoding.Raw,
                                     serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_NODE_KEY_INFO).derive(seed)
    scalar = int.from_bytes(okm, "big") % (_P384_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP384R1())


def node_key_openssh(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The private key as ``flower-supernode --auth-supernode-private-key`` reads it."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())


def node_public_openssh(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """The public key as one OpenSSH line (what the SuperLink registers)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.OpenSSH,
                               serialization.PublicFormat.OpenSSH).decode()


def _statement(device_id: str, public: str) -> bytes:
    return json.dumps({"device_id": device_id, "node_public_key": public, "purpose": PURPOSE},
                      sort_keys=True, separators=(",", ":")).encode()


def bind_node_key(signing_key: Ed25519PrivateKey, device_id: str) -> dict[str, str]:
    """The signed statement that this device's node key is its own."""
    if not device_id or len(device_id) > 200:
        raise InputError(f"device id {device_id!r:.60}: expected 1..200 characters")
    public = node_public_openssh(node_key(signing_key))
    signature = signing_key.sign(_statement(device_id, public))
    return {"device_id": device_id, "node_public_key": public, "signature": signature.hex()}


def verify_node_binding(device_key: Ed25519PublicKey, binding: object,
                        device_id: str) -> str:
    """The node public key (OpenSSH line) of a binding the enrolled ``device_key`` signed for
    ``device_id``; raises IntegrityError for anything else (network input: hostile)."""
    if not isinstance(binding, Mapping) or len(json.dumps(binding, default=str)) > \
            MAX_BINDING_BYTES:
        raise IntegrityError("node key binding: expected a small JSON object")
    public, signature = binding.get("node_public_key"), binding.get("signature")
    if binding.get("device_id") != device_id or not isinstance(public, str) or \
            not isinstance(signature, str):
        raise IntegrityError(f"node key binding: not a binding for device {device_id!r:.60}")
    try:
        device_key.verify(bytes.fromhex(signature), _statement(device_id, public))
        key = serialization.load_ssh_public_key(public.encode())
    except (ValueError, InvalidSignature) as e:
        raise IntegrityError(f"node key binding for {device_id!r:.60}: bad signature or key "
                             f"({type(e).__name__})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP384R1):
        raise IntegrityError("node key binding: expected a P-384 node key")
    return public
