"""Secure model bundles: signed (Ed25519, DSSE), encrypted (AES-256-GCM chunks), self-tested.

::

    pack(model, card, version, release_key, [fleet_pub])  -> bundle bytes (.elb)
    model_reference(model, x, labels)                      -> MonitorReference (pack(reference=))
    verify(bundle, trust)                                  -> Manifest   (pure, no I/O)
    decrypt(bundle, manifest, device_key)                  -> model bytes (in memory)
    session_from_bundle(path, trust, device_key)           -> edgeloop.runtime.Session
    make_delta(base_bundle, target_bundle, release_key, fleet_key) -> delta bytes (.eld)
    apply_delta(delta, base_model, trust, device_key)      -> the target bundle's bytes

The container format is described in ``_format``, the encryption in ``_crypto``, trust roots
in ``_trust``, signed rollback statements in ``_rollback`` and delta bundles in ``_delta``.
"""

from edgeloop.bundle._crypto import unwrap_data_key, wrap_data_key
from edgeloop.bundle._delta import (
    DELTA_TYPE,
    DeltaInfo,
    apply_delta,
    cdc_chunks,
    delta_breakdown,
    make_delta,
    read_delta,
)
from edgeloop.bundle._format import MANIFEST_TYPE, canonical_json, pae, parse_container
from edgeloop.bundle._keys import (
    DeviceKey,
    ed25519_from_dict,
    ed25519_to_dict,
    encryption_key_from_pem,
    generate_encryption_key,
    generate_signing_key,
    key_id,
    load_encryption_key,
    load_public_key,
    load_signing_key,
    public_key_from_pem,
    save_private_key,
    save_public_key,
    signing_key_from_pem,
)
from edgeloop.bundle._load import (
    BundleFileCheck,
    check_requirements,
    open_bundle,
    session_from_bundle,
)
from edgeloop.bundle._pack import pack
from edgeloop.bundle._reference import model_reference
from edgeloop.bundle._rollback import RollbackStatement, sign_rollback, verify_rollback
from edgeloop.bundle._selftest import check_selftest, synthesize_inputs
from edgeloop.bundle._trust import DIRECTOR_FIELD, RELEASE_FIELD, Trust, load_trust
from edgeloop.bundle._verify import decrypt, parse_manifest, verify

# the names edgeloop re-exports at the top level
pack_bundle = pack
verify_bundle = verify
decrypt_bundle = decrypt

__all__ = [
    "DELTA_TYPE",
    "MANIFEST_TYPE",
    "DIRECTOR_FIELD",
    "RELEASE_FIELD",
    "BundleFileCheck",
    "DeltaInfo",
    "DeviceKey",
    "RollbackStatement",
    "Trust",
    "apply_delta",
    "canonical_json",
    "cdc_chunks",
    "check_requirements",
    "check_selftest",
    "decrypt",
    "decrypt_bundle",
    "delta_breakdown",
    "ed25519_from_dict",
    "ed25519_to_dict",
    "encryption_key_from_pem",
    "generate_encryption_key",
    "generate_signing_key",
    "key_id",
    "load_encryption_key",
    "load_public_key",
    "load_signing_key",
    "load_trust",
    "make_delta",
    "model_reference",
    "open_bundle",
    "pack",
    "pack_bundle",
    "pae",
    "parse_container",
    "parse_manifest",
    "public_key_from_pem",
    "read_delta",
    "save_private_key",
    "save_public_key",
    "session_from_bundle",
    "sign_rollback",
    "signing_key_from_pem",
    "synthesize_inputs",
    "unwrap_data_key",
    "verify",
    "verify_bundle",
    "verify_rollback",
    "wrap_data_key",
]
