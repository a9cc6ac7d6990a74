"""Delta bundles: a delta rebuilds the target bundle byte for byte, and every trust check that
holds for a full bundle (signature, encryption to the device, version floor, the signed target
hash) holds for a delta. Device-install test: numpy + cryptography only."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest

from delta_models import two_layer
from edgeloop.artifacts import ModelCard
from edgeloop.bundle import (
    DELTA_TYPE,
    Trust,
    apply_delta,
    canonical_json,
    cdc_chunks,
    decrypt,
    generate_encryption_key,
    generate_signing_key,
    make_delta,
    pack,
    parse_container,
    read_delta,
    sign_rollback,
    unwrap_data_key,
    verify,
    wrap_data_key,
)
from edgeloop.bundle._delta import _OP, _apply_ops, chunk_sizes, delta_breakdown, delta_ops
from edgeloop.bundle._format import build_container, sign_envelope
from edgeloop.errors import (
    BundleFormatError,
    DecryptionError,
    InputError,
    IntegrityError,
    RollbackError,
    SecurityError,
    SignatureError,
)


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "release": generate_signing_key(),
        "fleet": generate_encryption_key(),
        "device": generate_encryption_key(),
        "other": generate_encryption_key(),
    }


@pytest.fixture(scope="module")
def trust(keys: dict[str, Any]) -> Trust:
    return Trust.from_keys([keys["release"].public_key()])


def _pack(model: bytes, version: int, keys: dict[str, Any]) -> bytes:
    card = ModelCard(name="cnn", sha256="", architecture="mlp")
    return pack(
        model, card, version, keys["release"], [keys["fleet"].public_key()], chunk_size=4096
    )


@pytest.fixture(scope="module")
def versions(keys: dict[str, Any]) -> dict[str, Any]:
    a_model, b_model = two_layer(1, 2), two_layer(1, 3)  # same body, new head
    a, b = _pack(a_model, 1, keys), _pack(b_model, 2, keys)
    delta = make_delta(a, b, keys["release"], keys["fleet"])
    mb = verify(b, Trust.from_keys([keys["release"].public_key()]))
    recipient = wrap_data_key(
        unwrap_data_key(mb.encryption, keys["fleet"]), keys["device"].public_key()
    )
    return {
        "a_model": a_model,
        "b_model": b_model,
        "a": a,
        "b": b,
        "delta": delta,
        "recipient": recipient,
    }


def _apply(v: dict[str, Any], trust: Trust, keys: dict[str, Any], **kw: Any) -> bytes:
    args: dict[str, Any] = {"recipient": v["recipient"], "installed_version": 1}
    args.update(kw)
    delta = args.pop("delta", v["delta"])
    base = args.pop("base", v["a"])
    model = args.pop("model", v["a_model"])
    key = args.pop("key", keys["device"])
    return apply_delta(delta, base, model, trust, key, **args)


def test_delta_rebuilds_the_target_bundle_exactly(
    versions: dict[str, Any], trust: Trust, keys: dict[str, Any]
) -> None:
    b = _apply(versions, trust, keys, expect_sha256=hashlib.sha256(versions["b"]).hexdigest())
    assert b == versions["b"]
    m = verify(b, trust, installed_version=1)
    assert decrypt(b, m, keys["device"], versions["recipient"]) == versions["b_model"]
    # a head-only change ships a fraction of the bundle
    assert len(versions["delta"]) < len(versions["b"]) / 5


def test_delta_opens_through_the_manifests_own_recipient(
    versions: dict[str, Any], trust: Trust, keys: dict[str, Any]
) -> None:
    """Without a re-wrapped key the target manifest's recipients are used (the fleet key)."""
    b = apply_delta(versions["delta"], versions["a"], versions["a_model"], trust, keys["fleet"])
    assert b == versions["b"]


def test_read_delta_names_base_and_target(versions: dict[str, Any], trust: Trust) -> None:
    info = read_delta(versions["delta"], trust)
    assert (info.name, info.base_version, info.target_version) == ("cnn", 1, 2)
    assert info.bundle_sha256 == hashlib.sha256(versions["b"]).hexdigest()
    assert info.base_bundle_sha256 == hashlib.sha256(versions["a"]).hexdigest()


@pytest.mark.parametrize("where", ["manifest", "payload", "signature"])
def test_tampered_delta_is_refused(
    versions: dict[str, Any], trust: Trust, keys: dict[str, Any], where: str
) -> None:
    data = bytearray(versions["delta"])
    c = parse_container(data)
    off = {
        "manifest": 12 + 12 + 40,
        "payload": c.payload_offset + 5,
        "signature": 12 + 12 + len(c.manifest) + 12 + 40,
    }[where]
    del c
    data[off] ^= 0x01
    with pytest.raises(SecurityError):
        _apply(versions, trust, keys, delta=bytes(data))


def test_validly_signed_but_edited_delta_fails_the_target_hash(
    versions: dict[str, Any], trust: Trust, keys: dict[str, Any]
) -> None:
    """A delta re-signed by the release key whose ops were swapped (a bug or an insider on the
    build side) still cannot produce anything but B's signed model."""
    c = parse_container(versions["delta"])
    man = json.loads(c.manifest)
    man["target"]["model_sha256"] = hashlib.sha256(b"x").hexdigest()
    man["base"]["version"] = 0  # and any other field: only B's signed hashes decide
    body = canonical_json(man)
    forged = build_container(
        body, sign_envelope(body, [keys["release"]], DELTA_TYPE), bytes(c.payload)
    )
    with pytest.raises(IntegrityError):
        _apply(versions, trust, keys, delta=forged)


def test_untrusted_signer_is_refused(versions: dict[str, Any], keys: dict[str, Any]) -> None:
    other = Trust.from_keys([generate_signing_key().public_key()])
    with pytest.raises(SignatureError):
        _apply(versions, other, keys)


def test_wrong_base_is_refused(
    versions: dict[str, Any], trust: Trust, keys: dict[str, Any]
) -> None:
    with pytest.raises(IntegrityError, match="base bundle"):
        _apply(versions, trust, keys, model=two_layer(9, 2))
    with pytest.raises(IntegrityError, match="base bundle"):
        _apply(versions, trust, keys, base=versions["b"])


def test_wrong_device_key_is_refused(
    versions: dict[str, Any], trust: Trust, keys: dict[str, Any]
) -> None:
    with pytest.raises(DecryptionError):
        _apply(versions, trust, keys, key=keys["other"])
    # a recipient wrapped for another device does not open it either
    with pytest.raises(DecryptionError):
        _apply(versions, trust, keys, key=keys["other"], recipient=None)


def test_rollback_through_a_delta_is_refused(
    versions: dict[str, Any], trust: Trust, keys: dict[str, Any]
) -> None:
    back = make_delta(versions["b"], versions["a"], keys["release"], keys["fleet"])
    b, b_model = versions["b"], versions["b_model"]
    with pytest.raises(RollbackError):
        apply_delta(back, b, b_model, trust, keys["fleet"], installed_version=2)
    statement = sign_rollback("cnn", 2, 1, keys["release"])
    rebuilt = apply_delta(
        back, b, b_model, trust, keys["fleet"], installed_version=2, rollback=statement
    )
    assert rebuilt == versions["a"]


def test_revoked_or_other_target_is_refused(
    versions: dict[str, Any], trust: Trust, keys: dict[str, Any]
) -> None:
    """The signed metadata (TUF target, assignment) names B's hash; a delta to anything else,
    e.g. a revoked version the metadata no longer lists, is refused before it is applied."""
    with pytest.raises(IntegrityError, match="expects"):
        _apply(versions, trust, keys, expect_sha256=hashlib.sha256(versions["a"]).hexdigest())


def test_a_delta_is_not_a_bundle(versions: dict[str, Any], trust: Trust) -> None:
    with pytest.raises(SignatureError, match="payloadType"):
        verify(versions["delta"], trust)
    with pytest.raises(SignatureError, match="payloadType"):
        read_delta(versions["b"], trust)


def test_cdc_chunks_cover_the_data_and_survive_a_shift() -> None:
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    chunks = cdc_chunks(data)
    assert chunks[0][0] == 0 and sum(n for _, n in chunks) == len(data)
    assert all(o2 == o1 + n1 for (o1, n1), (o2, _) in zip(chunks, chunks[1:], strict=False))
    assert all(n <= 32768 for _, n in chunks) and all(n >= 1024 for _, n in chunks[:-1])
    shifted = b"inserted!" + data
    a = {data[o : o + n] for o, n in chunks}
    b = [shifted[o : o + n] for o, n in cdc_chunks(shifted)]
    assert sum(1 for c in b if c in a) >= len(b) - 2  # only the chunk at the insert differs
    ops = delta_ops(data, shifted)
    assert len(ops) < 40_000
    assert _apply_ops(ops, [data], len(shifted)) == shifted
    # a copy may span the segments of the base stream
    parts = [data[:1000], b"", data[1000:1001], data[1001:]]
    assert _apply_ops(ops, parts, len(shifted)) == shifted


def _literal_bytes(ops: bytes) -> int:
    pos = total = 0
    while pos < len(ops):
        kind, _, n = _OP.unpack_from(ops, pos)
        pos += _OP.size
        if kind == 1:
            total, pos = total + n, pos + n
    return total


def test_chunk_sizes_scale_with_the_target() -> None:
    assert chunk_sizes(136_000) == (32, 128, 1024)  # the digits CNN's bundle stream
    assert chunk_sizes(1 << 20) == (256, 1024, 8192)
    assert chunk_sizes(100 << 20) == (1024, 4096, 32768)  # at most 4 KiB on average
    assert chunk_sizes(0) == (16, 64, 512)


def test_a_head_only_change_ships_little_more_than_the_head() -> None:
    a, b = two_layer(1, 2), two_layer(1, 3)  # a 4 KiB head on a 130 kB body
    scaled = _literal_bytes(delta_ops(a, b, *chunk_sizes(len(b))))
    fixed = _literal_bytes(delta_ops(a, b, 1024, 4096, 32768))
    assert 4096 <= scaled <= 4096 + 512  # the head and the small chunks at its two edges
    assert fixed > 2 * 4096  # 4 KiB chunks cost the head twice over


def test_the_delta_records_the_chunk_sizes_it_used(versions: dict[str, Any]) -> None:
    manifest = json.loads(parse_container(versions["delta"]).manifest)
    target = parse_container(versions["b"])
    stream = len(target.manifest) + len(target.signatures) + len(versions["b_model"])
    mn, avg, mx = chunk_sizes(stream)
    assert manifest["chunking"] == {"algorithm": "gear64-cdc-v1", "min": mn, "avg": avg, "max": mx}


def test_the_breakdown_accounts_for_every_byte(versions: dict[str, Any], keys: dict) -> None:
    with pytest.raises(InputError, match="base bundle"):  # its ops need A's manifest
        delta_breakdown(versions["delta"], keys["fleet"])
    got = delta_breakdown(versions["delta"], keys["fleet"], versions["a"])
    target = parse_container(versions["b"])
    stream = len(target.manifest) + len(target.signatures) + len(versions["b_model"])
    literal = sum(v for k, v in got.items() if k.startswith("literal_"))
    assert got["copied_bytes"] + literal == stream
    assert got["metadata_bytes"] + got["payload_bytes"] == got["delta_bytes"]
    assert got["delta_bytes"] == len(versions["delta"])
    assert 4096 <= got["literal_model_bytes"] <= 4096 + 512  # the new head, little else
    assert got["literal_signatures_bytes"] == len(target.signatures)  # a new signature
    with pytest.raises(SecurityError):  # not a recipient of B: nothing to explain
        delta_breakdown(versions["delta"], keys["other"], versions["a"])


def test_the_ops_are_compressed_against_the_base_manifest(versions: dict[str, Any]) -> None:
    import zlib

    manifest = json.loads(parse_container(versions["delta"]).manifest)
    assert manifest["ops"]["compression"] == "zlib-base-manifest"
    base = parse_container(versions["a"]).manifest
    target = parse_container(versions["b"]).manifest
    plain = zlib.compress(target, 6)
    z = zlib.compressobj(6, zdict=base[-32768:])
    assert len(z.compress(target) + z.flush()) < len(plain) * 0.8  # B's manifest echoes A's


@pytest.mark.parametrize(
    "ops",
    [
        b"\x00" + (10**9).to_bytes(8, "big") + (5).to_bytes(8, "big"),  # copy past the base
        b"\x01" + bytes(8) + (100).to_bytes(8, "big") + b"short",  # literal past the ops
        b"\x07" + bytes(16),  # unknown kind
        b"\x00" + bytes(7),  # truncated record
        b"\x00" + bytes(8) + (1).to_bytes(8, "big"),  # rebuilds 1 byte of 10
    ],
)
def test_hostile_ops_are_refused(ops: bytes) -> None:
    with pytest.raises(BundleFormatError):
        _apply_ops(ops, [b"01234", b"56789"], 10)
