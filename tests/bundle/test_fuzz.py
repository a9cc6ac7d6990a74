"""Hypothesis: no input crashes the bundle and manifest parsers with anything but EdgeloopError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.bundle import Trust, parse_container, parse_manifest, verify
from edgeloop.bundle._format import MAGIC
from edgeloop.bundle._selftest import decode_array
from edgeloop.errors import BundleFormatError, EdgeloopError

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.binary(max_size=300))
def test_container_parser_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(BundleFormatError):
        parse_container(data)


@FUZZ
@given(st.binary(max_size=200))
def test_container_parser_on_bytes_after_the_magic(tail: bytes) -> None:
    with contextlib.suppress(BundleFormatError):
        parse_container(MAGIC + tail)


@FUZZ
@given(st.data())
def test_verify_on_mutated_bundles(bundle: bytes, trust: Trust, data: st.DataObject) -> None:
    out = bytearray(bundle)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(out) - 1))
        out[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(out)))
    try:
        m = verify(bytes(out[:cut]) if data.draw(st.booleans()) else bytes(out), trust)
    except EdgeloopError:
        return
    assert m.name == "tiny"  # only a mutation that changed nothing can pass


@FUZZ
@given(json_values)
def test_manifest_parser_on_random_json(value: Any) -> None:
    with contextlib.suppress(BundleFormatError):
        parse_manifest(json.dumps(value).encode())


@FUZZ
@given(
    st.fixed_dictionaries(
        {"name": json_values, "version": json_values, "model_card": json_values},
        optional={
            "parts": json_values,
            "inputs": json_values,
            "selftest": json_values,
            "encryption": json_values,
        },
    )
)
def test_manifest_parser_on_manifest_shaped_json(value: dict[str, Any]) -> None:
    with contextlib.suppress(BundleFormatError):
        parse_manifest(json.dumps(value).encode())


@FUZZ
@given(st.binary(max_size=200))
def test_manifest_parser_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(BundleFormatError):
        parse_manifest(data)


@FUZZ
@given(json_values)
def test_selftest_tensor_decoder(value: Any) -> None:
    with contextlib.suppress(BundleFormatError):
        decode_array(value, "selftest.inputs['x']")


MANIFEST_FIELDS = [
    "name",
    "version",
    "model_card",
    "parts",
    "selftest",
    "encryption",
    "requirements",
    "inputs",
]


@FUZZ
@given(st.sampled_from(MANIFEST_FIELDS), json_values)
def test_validly_signed_hostile_manifests(
    bundle: bytes,
    trust: Trust,
    release_key: Any,
    device_key: Any,
    resign: Any,
    field: str,
    value: Any,
) -> None:
    """A release key holder's garbage still gets a clean error on the device, never a crash."""
    from edgeloop.bundle import decrypt

    data = resign(bundle, lambda m: m.__setitem__(field, value), release_key)
    try:
        m = verify(data, trust)
        decrypt(data, m, device_key)
    except EdgeloopError:
        pass


@FUZZ
@given(
    st.sampled_from(["algorithm", "chunk_size", "nonce_prefix", "recipients"]),
    json_values | st.integers(),
)
def test_validly_signed_hostile_encryption_fields(
    bundle: bytes,
    trust: Trust,
    release_key: Any,
    device_key: Any,
    resign: Any,
    field: str,
    value: Any,
) -> None:
    from edgeloop.bundle import decrypt

    data = resign(bundle, lambda m: m["encryption"].__setitem__(field, value), release_key)
    with contextlib.suppress(EdgeloopError):
        decrypt(data, verify(data, trust), device_key)


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_rollback_statement_parser(trust: Trust, data: bytes) -> None:
    from edgeloop.bundle import verify_rollback

    with contextlib.suppress(EdgeloopError):
        verify_rollback(data, trust)


@FUZZ
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_trust_root_parser(data: bytes) -> None:
    with contextlib.suppress(EdgeloopError):
        Trust.from_root_bytes(data)
