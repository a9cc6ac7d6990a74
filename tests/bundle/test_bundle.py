"""Pack, verify, decrypt and load: the happy path and what the manifest says."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from edgeloop.artifacts import ModelCard, sha256_bytes
from edgeloop.bundle import (
    Trust,
    decrypt,
    load_trust,
    open_bundle,
    pack,
    parse_container,
    save_public_key,
    session_from_bundle,
    unwrap_data_key,
    verify,
    wrap_data_key,
)
from edgeloop.errors import InputError, IntegrityError, ModelError


def test_verify_returns_the_signed_manifest(
    bundle: bytes, trust: Trust, model_bytes: bytes
) -> None:
    m = verify(bundle, trust)
    assert (m.name, m.version) == ("tiny", 3)
    assert m.parts["model"] == {
        "sha256": sha256_bytes(model_bytes),
        "length": len(model_bytes),
        "format": "onnx",
    }
    assert m.parts["payload"]["length"] == len(parse_container(bundle).payload)
    assert m.model_card.sha256 == sha256_bytes(model_bytes)
    assert m.model_card.lineage[0].role == "source_model"
    assert [(s.name, s.dtype, s.shape) for s in m.inputs] == [("x", "float32", ("N", 4))]
    assert [(s.name, s.dtype) for s in m.outputs] == [("y", "float32")]
    assert set(m.selftest["inputs"]) == {"x"} and set(m.selftest["outputs"]) == {"y"}
    assert m.requirements["min_onnxruntime"] == "1.17"
    assert m.encryption["algorithm"] == "AES-256-GCM-chunked-v1"


def test_payload_is_encrypted_in_several_chunks(bundle: bytes, model_bytes: bytes) -> None:
    payload = bytes(parse_container(bundle).payload)
    assert model_bytes[:64] not in payload
    n = -(-len(model_bytes) // 64)
    assert n > 2 and len(payload) == len(model_bytes) + 16 * n


def test_decrypt_gives_back_the_model(
    bundle: bytes, trust: Trust, device_key: Any, model_bytes: bytes
) -> None:
    assert decrypt(bundle, verify(bundle, trust), device_key) == model_bytes


def test_every_recipient_can_decrypt(model_bytes: bytes, card: ModelCard, release_key: Any) -> None:
    from edgeloop.bundle import generate_encryption_key

    a, b = generate_encryption_key(), generate_encryption_key()
    data = pack(model_bytes, card, 1, release_key, [a.public_key(), b.public_key()])
    m = verify(data, Trust.from_keys([release_key.public_key()]))
    assert decrypt(data, m, a) == decrypt(data, m, b) == model_bytes


def test_rewrapped_data_key_decrypts(
    bundle: bytes, trust: Trust, device_key: Any, model_bytes: bytes
) -> None:
    """The fleet server unwraps with its key and re-wraps per device (see docs/fleet-protocol)."""
    from edgeloop.bundle import generate_encryption_key

    m = verify(bundle, trust)
    other = generate_encryption_key()
    entry = wrap_data_key(unwrap_data_key(m.encryption, device_key), other.public_key())
    assert decrypt(bundle, m, other, recipient=entry) == model_bytes


def test_session_from_bundle_runs_the_model(
    bundle_file: Path, trust: Trust, device_key: Any, model_bytes: bytes
) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    want = ort.InferenceSession(model_bytes).run(None, {"x": x})[0]
    session = session_from_bundle(bundle_file, trust, device_key)
    np.testing.assert_allclose(session.run({"x": x})["y"], want, rtol=1e-6)
    assert session.manifest.version == 3
    # the session names the plaintext it runs by the signed hash, which is the real one
    assert session.model_sha256 == hashlib.sha256(model_bytes).hexdigest()


def test_session_from_bundle_takes_paths(
    tmp_path: Path, bundle_file: Path, release_key: Any, device_key: Any
) -> None:
    from edgeloop.bundle import save_private_key

    save_public_key(tmp_path / "release.pub.pem", release_key)
    save_private_key(tmp_path / "device.pem", device_key, b"s3cret")
    session = session_from_bundle(
        bundle_file, tmp_path / "release.pub.pem", tmp_path / "device.pem", passphrase=b"s3cret"
    )
    assert session.output_names == ["y"]


def test_selftest_inputs_can_be_given(
    model_bytes: bytes, card: ModelCard, release_key: Any, device_key: Any, trust: Trust
) -> None:
    x = np.full((5, 4), 0.5, dtype=np.float32)
    data = pack(
        model_bytes, card, 1, release_key, [device_key.public_key()], selftest_inputs={"x": x}
    )
    assert verify(data, trust).selftest["inputs"]["x"]["shape"] == [5, 4]


def test_pack_refuses_a_card_for_another_model(
    model_bytes: bytes, release_key: Any, device_key: Any
) -> None:
    card = ModelCard(name="tiny", sha256="cd" * 32)
    with pytest.raises(InputError, match="describes sha256 cdcdcdcd"):
        pack(model_bytes, card, 1, release_key, [device_key.public_key()])


def test_file_changed_after_load_is_refused(
    bundle_file: Path, trust: Trust, device_key: Any
) -> None:
    session = session_from_bundle(bundle_file, trust, device_key, integrity_interval_s=0)
    x = np.zeros((1, 4), dtype=np.float32)
    session.run({"x": x})  # the file is intact: served
    data = bytearray(bundle_file.read_bytes())
    data[-5] ^= 0x01
    bundle_file.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="changed on disk"):
        session.run({"x": x})


def test_requirements_newer_runtime_is_refused(
    model_bytes: bytes,
    card: ModelCard,
    release_key: Any,
    device_key: Any,
    trust: Trust,
    tmp_path: Path,
) -> None:
    data = pack(
        model_bytes,
        card,
        1,
        release_key,
        [device_key.public_key()],
        requirements={"min_onnxruntime": "99.0"},
    )
    p = tmp_path / "b.elb"
    p.write_bytes(data)
    with pytest.raises(ModelError, match=r"requires onnxruntime >= 99.0"):
        open_bundle(p, trust, device_key)


def test_trust_from_a_pem_key(tmp_path: Path, release_key: Any, bundle: bytes) -> None:
    save_public_key(tmp_path / "release.pub.pem", release_key)
    assert verify(bundle, load_trust(tmp_path / "release.pub.pem")).name == "tiny"


def test_manifest_is_canonical_json(bundle: bytes) -> None:
    raw = parse_container(bundle).manifest
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()


def test_writable_bytes_is_filled_in_place_and_dropped_on_error() -> None:
    from edgeloop.bundle._buffers import writable_bytes

    with writable_bytes(4) as (view, result):
        view[:] = b"abcd"
    assert result.value == b"abcd" and isinstance(result.value, bytes)
    with pytest.raises(RuntimeError), writable_bytes(4) as (view, result):
        view[:2] = b"ab"
        raise RuntimeError("decryption failed half way")
    assert result.value == b""


def test_a_hardware_backed_device_key_plugs_in(
    bundle_file: Path, trust: Trust, device_key: Any
) -> None:
    """Anything with exchange() and public_key() decrypts: the private key may stay in a TPM."""
    calls: list[int] = []

    class SecureElement:
        def exchange(self, peer: Any) -> bytes:
            calls.append(1)
            return bytes(device_key.exchange(peer))

        def public_key(self) -> Any:
            return device_key.public_key()

    session = session_from_bundle(bundle_file, trust, SecureElement())
    assert session.output_names == ["y"] and calls == [1]


def test_device_key_of_the_wrong_kind_is_a_key_error(bundle_file: Path, trust: Trust) -> None:
    from edgeloop.errors import KeyError_

    with pytest.raises(KeyError_, match="expected a key file or an X25519 key, got int"):
        session_from_bundle(bundle_file, trust, 42)  # type: ignore[arg-type]


def test_isa_requirements_are_checked_against_this_cpu(bundle: bytes, trust: Trust) -> None:
    import dataclasses

    from edgeloop.bundle import check_requirements

    m = dataclasses.replace(verify(bundle, trust), requirements={"isa": ["avx512_vnni"]})
    check_requirements(m, host_isa=["avx2", "avx512_vnni"])
    with pytest.raises(ModelError, match="requires ISA avx512_vnni, which this CPU lacks"):
        check_requirements(m, host_isa=["avx2"])
    check_requirements(m, host_isa=[])  # flags unknown here: not refused on a guess


def test_scalar_self_test_tensors_keep_their_shape() -> None:
    import numpy as np

    from edgeloop.bundle._selftest import decode_array, encode_array

    back = decode_array(encode_array(np.float32(2.5)), "scalar")
    assert back.shape == () and back.dtype == np.float32 and float(back) == 2.5
