"""Strict readers for JSON fields: a reference is signed into bundles and a sketch comes from
the network, so every value is checked (type, finite, range, size) before it is used."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import MonitorError

__all__ = ["as_float", "as_int", "as_str", "float_array", "int_array", "mapping"]


def mapping(value: Any, where: str, err: type[MonitorError]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise err(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def as_str(value: Any, where: str, err: type[MonitorError], max_len: int = 200) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise err(f"{where}: expected a string of 1..{max_len} characters, got {value!r:.60}")
    return value


def as_int(value: Any, where: str, err: type[MonitorError], lo: int = 0, hi: int = 2**53) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise err(f"{where}: expected an integer in [{lo}, {hi}], got {value!r:.60}")
    return value


def as_float(
    value: Any,
    where: str,
    err: type[MonitorError],
    lo: float = -math.inf,
    hi: float = math.inf,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise err(f"{where}: expected a number, got {value!r:.60}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise err(f"{where}: expected a finite number in [{lo}, {hi}], got {value!r:.60}")
    return v


def _sequence(
    value: Any, where: str, err: type[MonitorError], size: int | None, max_size: int
) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise err(f"{where}: expected a list, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise err(f"{where}: expected {size} values, got {len(value)}")
    if len(value) > max_size:
        raise err(f"{where}: at most {max_size} values, got {len(value)}")
    return value


def float_array(
    value: Any,
    where: str,
    err: type[MonitorError],
    *,
    size: int | None = None,
    max_size: int = 4096,
    lo: float = -math.inf,
    hi: float = math.inf,
) -> npt.NDArray[np.float64]:
    """A list of finite numbers in [lo, hi] as float64 (no bools, no strings, no nesting)."""
    seq = _sequence(value, where, err, size, max_size)
    # exact types (what json.loads makes): bool, a subclass of int, is refused
    if not all(type(v) is float or type(v) is int for v in seq):
        raise err(f"{where}: expected a list of numbers")
    arr = np.asarray(seq, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or (arr.size and (arr.min() < lo or arr.max() > hi)):
        raise err(f"{where}: expected finite numbers in [{lo}, {hi}]")
    return arr


def int_array(
    value: Any,
    where: str,
    err: type[MonitorError],
    *,
    size: int | None = None,
    max_size: int = 4096,
    hi: int = 2**53,
) -> npt.NDArray[np.int64]:
    """A list of integers in [0, hi] (counts) as int64."""
    seq = _sequence(value, where, err, size, max_size)
    if not all(type(v) is int for v in seq):
        raise err(f"{where}: expected a list of integers in [0, {hi}]")
    if seq and (min(seq) < 0 or max(seq) > hi):
        raise err(f"{where}: expected a list of integers in [0, {hi}]")
    return np.asarray(seq, dtype=np.int64).reshape(len(seq))
