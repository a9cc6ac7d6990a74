"""Update compression: int8 and top-k deltas, their bytes, and hostile encodings refused."""

import numpy as np
import pytest

from edgeloop.errors import DataError, InputError
from edgeloop.federated.device import decode_update, encode_update, parse_compression, wire_bytes

RNG = np.random.default_rng(0)
DELTA = {"weight": RNG.normal(size=(64, 10)).astype(np.float32),
         "bias": RNG.normal(size=(10,)).astype(np.float32)}


def test_none_is_lossless_and_weighs_float32() -> None:
    enc = encode_update(DELTA, "none")
    out = decode_update(enc, DELTA)
    assert all(np.array_equal(out[k], DELTA[k]) for k in DELTA)
    assert wire_bytes(enc) == 4 * (640 + 10)


def test_int8_is_a_quarter_of_the_bytes_within_half_a_step() -> None:
    enc = encode_update(DELTA, "int8")
    out = decode_update(enc, DELTA)
    for k, v in DELTA.items():
        step = np.abs(v).max() / 127
        assert np.abs(out[k] - v).max() <= step / 2 + 1e-6
    assert wire_bytes(enc) == 640 + 10 + 2 * 4


def test_topk_keeps_the_largest_entries_only() -> None:
    enc = encode_update(DELTA, "topk:0.1")
    out = decode_update(enc, DELTA)
    w = DELTA["weight"]
    kept = out["weight"] != 0
    assert kept.sum() == 64
    assert np.abs(w[kept]).min() >= np.abs(w[~kept]).max()
    assert np.array_equal(out["weight"][kept], w[kept])
    assert wire_bytes(enc) == (64 + 1) * 8


def test_zero_delta_encodes() -> None:
    zero = {"w": np.zeros((3, 2), np.float32)}
    for spec in ("none", "int8", "topk:0.5"):
        assert not decode_update(encode_update(zero, spec), zero)["w"].any()


@pytest.mark.parametrize("spec", ["", "int4", "topk:", "topk:0", "topk:1.5", "topk:nan"])
def test_unknown_compressions_are_refused(spec: str) -> None:
    with pytest.raises(InputError, match="compression"):
        parse_compression(spec)


LIKE = {"w": np.zeros((4, 3), np.float32)}


@pytest.mark.parametrize(
    "enc",
    [
        {},  # nothing
        {"x::f32": np.zeros((4, 3), np.float32)},  # unknown array
        {"w::f32": np.zeros((3, 4), np.float32)},  # wrong shape
        {"w::f32": np.zeros((4, 3), np.float64)},  # wrong dtype
        {"w::f32": np.full((4, 3), np.nan, np.float32)},
        {"w::q": np.zeros((4, 3), np.int8), "w::scale": np.array([np.inf], np.float32)},
        {"w::q": np.zeros((4, 3), np.int8), "w::scale": np.array([-1.0], np.float32)},
        {"w::q": np.zeros((4, 3), np.int16), "w::scale": np.array([1.0], np.float32)},
        {"w::idx": np.array([12], np.int32), "w::val": np.ones(1, np.float32)},  # out of range
        {"w::idx": np.array([1, 1], np.int32), "w::val": np.ones(2, np.float32)},  # repeated
        {"w::idx": np.arange(13, dtype=np.int32), "w::val": np.ones(13, np.float32)},  # > size
        {"w::idx": np.array([1], np.int32), "w::val": np.ones(2, np.float32)},
        {"w::zip": np.zeros(3, np.float32)},  # unknown encoding
        {"w::f32": np.zeros((4, 3), np.float32), "w::val": np.ones(1, np.float32)},
    ],
)
def test_hostile_updates_are_refused(enc: dict[str, np.ndarray]) -> None:
    with pytest.raises(DataError):
        decode_update(enc, LIKE)


def test_non_finite_deltas_are_not_encoded() -> None:
    with pytest.raises(DataError):
        encode_update({"w": np.array([np.nan], np.float32)}, "int8")
