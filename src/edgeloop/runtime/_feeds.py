"""Input specs, feed validation and synthetic inputs: what a model expects and what it is given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgeloop.artifacts import TensorSpec
from edgeloop.errors import InputError, ModelInputError

__all__ = [
    "DEFAULT_DYNAMIC_DIM",
    "ORT_DTYPES",
    "concrete_shape",
    "format_shape",
    "parse_shape_overrides",
    "synthesize_inputs",
    "validate_feeds",
]

# ONNX Runtime's type strings -> numpy dtype names
ORT_DTYPES: dict[str, str] = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(bfloat16)": "bfloat16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}

# size of a dynamic non-batch dimension when neither data nor the user says otherwise
DEFAULT_DYNAMIC_DIM = 32


def format_shape(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _kind(dtype: np.dtype[Any]) -> str:
    if dtype.kind == "f":
        return "float"
    if dtype.kind in "iu":
        return "int"
    return dtype.kind


def _coerce(spec: TensorSpec, value: Any) -> np.ndarray:
    """Convert one feed to the spec's dtype when that loses no meaning, else refuse."""
    arr = np.asarray(value)
    if spec.dtype in ("str", "bfloat16"):
        return arr
    want = np.dtype(spec.dtype)
    if arr.dtype == want:
        return np.ascontiguousarray(arr)
    same_kind = _kind(arr.dtype) == _kind(want) and np.can_cast(arr.dtype, want, "same_kind")
    if not same_kind:
        raise ModelInputError(
            f"input {spec.name!r} expects {spec.dtype}, got {arr.dtype} "
            f"(convert the data, e.g. with .astype({spec.dtype!r}))"
        )
    return np.ascontiguousarray(arr.astype(want))


def _check_shape(spec: TensorSpec, arr: np.ndarray) -> None:
    expected = spec.shape
    if len(expected) != arr.ndim:
        raise ModelInputError(
            f"input {spec.name!r} expects rank {len(expected)} {format_shape(expected)}, "
            f"got rank {arr.ndim} {format_shape(arr.shape)}"
        )
    for axis, (want, got) in enumerate(zip(expected, arr.shape, strict=True)):
        if isinstance(want, int) and want != got:
            raise ModelInputError(
                f"input {spec.name!r} expects shape {format_shape(expected)}, got "
                f"{format_shape(arr.shape)} (axis {axis}: expected {want}, got {got})"
            )


def validate_feeds(specs: Sequence[TensorSpec], feeds: Any) -> dict[str, np.ndarray]:
    """Check names, dtypes and shapes; a bare array is accepted for a single-input model."""
    names = [s.name for s in specs]
    if not isinstance(feeds, Mapping):
        if len(specs) != 1:
            raise ModelInputError(
                f"the model has {len(specs)} inputs ({', '.join(names)}): "
                "give a mapping of input name to array, not a single array"
            )
        feeds = {specs[0].name: feeds}
    unknown = sorted(set(feeds) - set(names))
    if unknown:
        raise ModelInputError(
            f"unknown input {', '.join(map(repr, unknown))}; the model's inputs are: "
            f"{', '.join(names)}"
        )
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name not in feeds:
            given = ", ".join(map(str, feeds)) or "nothing"
            raise ModelInputError(
                f"missing input {spec.name!r} ({spec.dtype} {format_shape(spec.shape)}); "
                f"given: {given}"
            )
        arr = _coerce(spec, feeds[spec.name])
        _check_shape(spec, arr)
        out[spec.name] = arr
    return out


def parse_shape_overrides(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``["ids=1,64", "x=1x3x32x32"]`` -> ``{"ids": (1, 64), "x": (1, 3, 32, 32)}``."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise InputError(f"--shape {item!r}: expected NAME=D1,D2,... with positive integers")
        out[name] = shape
    return out


def concrete_shape(
    spec: TensorSpec, batch: int, overrides: Mapping[str, Sequence[int]] | None = None
) -> tuple[int, ...]:
    """The shape to synthesize: the override, else dynamic batch -> ``batch``, others -> 32."""
    if overrides and spec.name in overrides:
        return tuple(int(d) for d in overrides[spec.name])
    dims: list[int] = []
    for axis, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            dims.append(d)
        else:
            dims.append(batch if axis == 0 else DEFAULT_DYNAMIC_DIM)
    return tuple(dims)


def synthesize_inputs(
    specs: Sequence[TensorSpec],
    *,
    batch: int = 1,
    overrides: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Random inputs that match the specs: normal floats, small non-negative ints (indices)."""
    unknown = sorted(set(overrides or {}) - {s.name for s in specs})
    if unknown:
        raise ModelInputError(
            f"--shape names unknown input {', '.join(map(repr, unknown))}; the model's inputs "
            f"are: {', '.join(s.name for s in specs)}"
        )
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = concrete_shape(spec, batch, overrides)
        if spec.dtype in ("float32", "float16", "float64"):
            out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            out[spec.name] = rng.integers(0, 2, shape).astype(bool)
        elif spec.dtype in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"):
            # index-like inputs (token ids, categories) must stay inside small vocabularies
            out[spec.name] = rng.integers(0, 2, shape).astype(spec.dtype)
        else:
            raise ModelInputError(
                f"cannot synthesize input {spec.name!r} of type {spec.dtype}; give data instead"
            )
    return out
