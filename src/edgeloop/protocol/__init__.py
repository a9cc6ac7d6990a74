"""The fleet wire protocol, shared by the server and the device agent (docs/fleet-protocol.md).

Device layer: stdlib and ``cryptography`` only. Request signatures (``sign_request`` /
``verify_request``), signed assignments (``sign_assignment`` / ``verify_assignment``) and the
JSON bodies as frozen dataclasses.
"""

from __future__ import annotations

from edgeloop.protocol._envelope import (
    ASSIGNMENT_TYPE,
    canonical_json,
    pae,
    payload_sha256,
    public_key_id,
    sign_assignment,
    verify_assignment,
)
from edgeloop.protocol._keys import ed25519_from_hex, public_hex, x25519_from_hex
from edgeloop.protocol._messages import (
    HEALTH_STATES,
    Assignment,
    CheckIn,
    CheckInResponse,
    DeviceInfo,
    Enrollment,
    EnrollRequest,
    InstalledModel,
    KeyRequest,
    Release,
    TokenInfo,
    TokenRequest,
    Variant,
    WrappedKey,
    iso_time,
    parse_time,
)
from edgeloop.protocol._provisioning import (
    MAX_PROVISIONING_BYTES,
    Provisioning,
    load_provisioning,
    tls_context,
)
from edgeloop.protocol._signing import (
    ENROLL_DEVICE_ID,
    HEADER_DEVICE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MAX_SKEW_S,
    RequestSignature,
    parse_signature_headers,
    sign_request,
    signing_message,
    verify_request,
)

__all__ = [
    "MAX_PROVISIONING_BYTES",
    "Provisioning",
    "load_provisioning",
    "tls_context",
    "ASSIGNMENT_TYPE",
    "ENROLL_DEVICE_ID",
    "HEADER_DEVICE",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "HEALTH_STATES",
    "MAX_SKEW_S",
    "Assignment",
    "CheckIn",
    "CheckInResponse",
    "DeviceInfo",
    "EnrollRequest",
    "Enrollment",
    "InstalledModel",
    "KeyRequest",
    "Release",
    "RequestSignature",
    "TokenInfo",
    "TokenRequest",
    "Variant",
    "WrappedKey",
    "canonical_json",
    "ed25519_from_hex",
    "iso_time",
    "pae",
    "parse_signature_headers",
    "parse_time",
    "payload_sha256",
    "public_hex",
    "public_key_id",
    "sign_assignment",
    "sign_request",
    "signing_message",
    "verify_assignment",
    "verify_request",
    "x25519_from_hex",
]
