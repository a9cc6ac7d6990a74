"""Self-test tensors: encode them into the manifest, synthesize inputs, compare outputs.

An array is stored as ``{"dtype": "float32", "shape": [1, 3], "data": base64(little-endian)}``.
The manifest's ``selftest`` block is ``{"inputs": {name: array}, "outputs": {name: array},
"rtol": float, "atol": float}``; a device computes the outputs and refuses the model with
:class:`SelfTestError` when any differs beyond the tolerance.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgeloop.errors import BundleFormatError, SelfTestError

__all__ = [
    "ORT_DTYPES",
    "check_selftest",
    "decode_array",
    "decode_arrays",
    "encode_array",
    "synthesize_inputs",
]

# onnxruntime type strings -> numpy dtype names
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}
_ALLOWED = set(ORT_DTYPES.values())
MAX_ELEMENTS = 1 << 24


def encode_array(a: np.ndarray[Any, Any]) -> dict[str, Any]:
    # np.ascontiguousarray would turn a 0-d output (a scalar score) into shape (1,)
    arr = np.asarray(a, order="C")
    if arr.dtype.name not in _ALLOWED:
        raise BundleFormatError(f"self-test tensor dtype {arr.dtype.name!r} is not supported")
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "data": base64.b64encode(little.tobytes()).decode(),
    }


def decode_array(data: Any, where: str) -> np.ndarray[Any, Any]:
    if not isinstance(data, dict):
        raise BundleFormatError(f"{where}: expected an object, got {type(data).__name__}")
    dtype, shape, b64 = data.get("dtype"), data.get("shape"), data.get("data")
    if dtype not in _ALLOWED:
        raise BundleFormatError(f"{where}: dtype {dtype!r} is not one of {sorted(_ALLOWED)}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_ELEMENTS for d in shape
    ):
        raise BundleFormatError(f"{where}: shape {shape!r} is not a list of sizes")
    count = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if count > MAX_ELEMENTS:
        raise BundleFormatError(f"{where}: {count} elements, more than {MAX_ELEMENTS}")
    if not isinstance(b64, str):
        raise BundleFormatError(f"{where}: 'data' must be base64 text")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleFormatError(f"{where}: 'data' is not base64 ({e})") from e
    dt = np.dtype(dtype).newbyteorder("<")
    if len(raw) != count * dt.itemsize:
        raise BundleFormatError(
            f"{where}: {len(raw)} data bytes, expected {count * dt.itemsize} for {dtype}{shape}"
        )
    return np.frombuffer(raw, dtype=dt).astype(dtype).reshape(shape)


def decode_arrays(block: Any, where: str) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(block, dict):
        raise BundleFormatError(f"{where}: expected an object of named tensors")
    return {str(k): decode_array(v, f"{where}[{k!r}]") for k, v in block.items()}


def synthesize_inputs(
    specs: Mapping[str, tuple[str, tuple[int | str | None, ...]]], seed: int = 0
) -> dict[str, np.ndarray[Any, Any]]:
    """Deterministic inputs for each ``name -> (dtype, shape)``; dynamic axes become 1."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name, (dtype, shape) in specs.items():
        dims = tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape)
        dt = np.dtype(dtype)
        if dt.kind == "f":
            out[name] = rng.standard_normal(dims).astype(dt)
        elif dt.kind == "b":
            out[name] = np.zeros(dims, dtype=dt)
        else:  # integer ids: 0 is valid for embeddings, gathers and class indices alike
            out[name] = np.zeros(dims, dtype=dt)
    return out


def check_selftest(
    selftest: Mapping[str, Any],
    run: Callable[[dict[str, np.ndarray[Any, Any]]], Mapping[str, np.ndarray[Any, Any]]],
) -> float:
    """Run the self-test through ``run``; return the largest absolute error seen."""
    if not selftest:
        raise SelfTestError("the manifest carries no self-test; refusing an unchecked model")
    inputs = decode_arrays(selftest.get("inputs"), "selftest.inputs")
    expected = decode_arrays(selftest.get("outputs"), "selftest.outputs")
    rtol, atol = selftest.get("rtol", 1e-3), selftest.get("atol", 1e-5)
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (rtol, atol)):
        raise BundleFormatError(f"selftest tolerances must be numbers, got {rtol!r}, {atol!r}")
    try:
        got = run(inputs)
    except Exception as e:  # the runtime refuses the self-test inputs: the model is not this one
        raise SelfTestError(f"the model failed to run its self-test inputs: {e}") from e
    worst = 0.0
    for name, want in expected.items():
        if name not in got:
            raise SelfTestError(f"self-test output {name!r} missing; model gave {sorted(got)}")
        have = np.asarray(got[name])
        if have.shape != want.shape:
            raise SelfTestError(
                f"self-test output {name!r} has shape {have.shape}, expected {want.shape}"
            )
        if want.dtype.kind in "fc":
            diff = np.abs(have.astype(np.float64) - want.astype(np.float64))
            limit = atol + rtol * np.abs(want.astype(np.float64))
            bad = ~(diff <= limit)  # NaN counts as a mismatch
            err = float(np.nanmax(diff)) if diff.size else 0.0
        else:
            bad = have != want
            err = float(np.count_nonzero(bad))
        if np.any(bad):
            raise SelfTestError(
                f"self-test output {name!r}: {int(np.count_nonzero(bad))} of {want.size} values "
                f"differ (max abs error {err:.3g}, tolerance atol={atol} rtol={rtol})"
            )
        worst = max(worst, err)
    return worst
