"""Update compression: what a client sends is the change to the global arrays (a delta), encoded
as float32 (``none``), 8-bit integers with one scale per array (``int8``), or the ``k`` largest
entries by magnitude with their flat indices (``topk:FRACTION``).

``encode`` returns plain numpy arrays (they travel in a Flower ``ArrayRecord``) and ``decode``
rebuilds the dense delta. ``decode`` runs on the server on what a client sent, so it checks
everything: the method is known, shapes match the global arrays, values are finite, indices in
range and unique, sizes bounded. :func:`wire_bytes` is what the encoding weighs on the wire
(array payloads, not framing).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from edgeloop.errors import DataError, InputError

__all__ = ["COMPRESSIONS", "decode_update", "encode_update", "parse_compression", "wire_bytes"]

COMPRESSIONS = ("none", "int8", "topk:FRACTION")
Arrays = Mapping[str, npt.NDArray[np.generic]]
_SEP = "::"  # encoded array names: "<name>::<part>"


def parse_compression(spec: str) -> tuple[str, float]:
    """``none``, ``int8`` or ``topk:F`` (0 < F <= 1) -> (method, fraction)."""
    if spec in ("none", "int8"):
        return spec, 1.0
    if spec.startswith("topk:"):
        try:
            frac = float(spec[5:])
        except ValueError:
            frac = float("nan")
        if np.isfinite(frac) and 0 < frac <= 1:
            return "topk", frac
    raise InputError(f"compression {spec!r:.60}: expected none, int8 or topk:F with 0 < F <= 1")


def encode_update(delta: Arrays, spec: str = "none") -> dict[str, npt.NDArray[np.generic]]:
    """Encode a dense float delta per array name."""
    method, frac = parse_compression(spec)
    out: dict[str, npt.NDArray[np.generic]] = {}
    for name, arr in delta.items():
        if _SEP in name:
            raise InputError(f"array name {name!r} must not contain {_SEP!r}")
        a = np.asarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            raise DataError(f"update {name!r}: not all finite")
        if method == "none":
            out[f"{name}{_SEP}f32"] = a
        elif method == "int8":
            peak = float(np.max(np.abs(a))) if a.size else 0.0
            scale = peak / 127.0 if peak > 0 else 1.0
            out[f"{name}{_SEP}q"] = np.clip(np.rint(a / scale), -127, 127).astype(np.int8)
            out[f"{name}{_SEP}scale"] = np.array([scale], np.float32)
        else:
            flat = a.reshape(-1)
            k = max(1, int(round(frac * flat.size))) if flat.size else 0
            idx = np.zeros(0, np.int32)
            if k:
                top = np.argpartition(np.abs(flat), flat.size - k)[flat.size - k:]
                idx = np.sort(top.astype(np.int32))
            out[f"{name}{_SEP}idx"] = idx
            out[f"{name}{_SEP}val"] = flat[idx].astype(np.float32)
    return out


def decode_update(encoded: Arrays, like: Arrays) -> dict[str, npt.NDArray[np.float32]]:
    """The dense delta from an encoded update; ``like`` gives the names and shapes expected
    (the global arrays). Raises DataError on anything that does not fit."""
    parts: dict[str, dict[str, npt.NDArray[np.generic]]] = {}
    for key, arr in encoded.items():
        name, sep, part = key.rpartition(_SEP)
        if not sep or name not in like:
            raise DataError(f"update part {key!r:.80}: not a part of {sorted(like)}")
        parts.setdefault(name, {})[part] = np.asarray(arr)
    if set(parts) != set(like):
        raise DataError(f"update: expected arrays {sorted(like)}, got {sorted(parts)}")
    out: dict[str, npt.NDArray[np.float32]] = {}
    for name, ref in like.items():
        shape, got = np.shape(ref), parts[name]
        size = int(np.prod(shape))
        if set(got) == {"f32"}:
            a = got["f32"]
            if a.shape != shape or a.dtype != np.float32:
                raise DataError(f"update {name!r}: expected float32 {shape}, got {a.dtype} "
                                f"{a.shape}")
            dense = a
        elif set(got) == {"q", "scale"}:
            q, scale = got["q"], got["scale"]
            if q.shape != shape or q.dtype != np.int8 or scale.shape != (1,) or \
                    scale.dtype != np.float32:
                raise DataError(f"update {name!r}: expected int8 {shape} and one float32 scale")
            if not (np.isfinite(scale[0]) and 0 < scale[0] < 1e30):
                raise DataError(f"update {name!r}: scale {scale[0]!r} not finite and positive")
            dense = q.astype(np.float32) * scale[0]
        elif set(got) == {"idx", "val"}:
            idx, val = got["idx"], got["val"]
            if idx.ndim != 1 or val.shape != idx.shape or idx.dtype != np.int32 or \
                    val.dtype != np.float32 or len(idx) > size:
                raise DataError(f"update {name!r}: top-k parts must be int32 indices and "
                                f"float32 values of one length <= {size}")
            if len(idx) and (idx.min() < 0 or idx.max() >= size or
                             len(np.unique(idx)) != len(idx)):
                raise DataError(f"update {name!r}: top-k indices must be unique, in 0..{size - 1}")
            flat = np.zeros(size, np.float32)
            flat[idx] = val
            dense = flat.reshape(shape)
        else:
            raise DataError(f"update {name!r}: unknown encoding parts {sorted(got)}")
        if not np.all(np.isfinite(dense)):
            raise DataError(f"update {name!r}: not all finite")
        out[name] = dense.astype(np.float32)
    return out


def wire_bytes(encoded: Arrays) -> int:
    """Bytes of the encoded arrays' payloads."""
    return int(sum(np.asarray(a).nbytes for a in encoded.values()))
