"""Telemetry validation at ingest: a device's report is hostile until it checked out. Pure.

A report is stored only when every field is what the gates and the dashboard can use::

    device_id      str, the signing device (checked by the route)
    model          str of at most 200 characters, or null
    version        int >= 0, or null
    window_s       finite, 0 <= window_s <= limits.max_window_s
    metrics        at most limits.max_metrics names (str, at most 64 characters), each value a
                   finite int or float (not a bool, not a string, not NaN or infinity)
      counts       ``requests`` and every metric a rate gate reads as its numerator (``errors``,
                   ``timeouts`` ...: a name ending in ``s`` that is not a time unit): >= 0 and
                   at most ``window_s * limits.max_rate`` (a device cannot have served more
                   requests than the window allows at a sane rate)
      errors       <= ``requests`` when requests is reported (other counts, ``installs`` or
                   ``poll_failures``, happen without requests; the gates cap each
                   numerator at its device's requests)
      rates        ``*_rate``: within [0, 1]
    agent_version, sent_at   str of at most 64 characters, or null

Anything else is refused with a :class:`~edgeloop.fleet._store.Refused` (400, ``bad_report``)
naming the field, the value and what was expected, before the report reaches the database.
Fields this module does not know (``extra``, e.g. monitoring sketches) are left to their own
validators; here only their nesting is bounded (``limits.max_depth``: deeper JSON would make
the serializers recurse past Python's limit) and the body size limit bounds the rest.

Without this, a negative ``errors`` count reached the rate gate's ``math.sqrt`` and aborted the
rollout tick for every rollout; NaN counts turned pooled rates into NaN; a string metric broke
the device's dashboard page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeloop.artifacts import DeviceReport
from edgeloop.fleet._store import Refused

__all__ = ["TelemetryLimits", "is_count", "validate_report"]

_UNITS = ("_ms", "_us", "_ns", "_s", "_bytes")  # plural names that are not counts


@dataclass(frozen=True)
class TelemetryLimits:
    """Bounds of one report. ``max_rate`` is requests (or any count) per second of window."""

    max_window_s: float = 7 * 86400.0
    max_rate: float = 10_000.0
    max_metrics: int = 64
    max_name: int = 64
    max_depth: int = 32  # nesting of the fields this module does not know (``extra``)


def is_count(name: str) -> bool:
    """Whether metric ``name`` is an event count (``requests``, ``errors``, ``timeouts`` ...).

    Rate gates read ``X_rate`` as ``Xs / requests`` (``fleet._gates``), so every plural name
    that is not a duration or a size is a count the gates may sum.
    """
    return name.endswith("s") and not name.endswith(_UNITS)


# metrics with a fixed range: the on-device personal head's held-out accuracy gain and whether
# it serves (edgeloop.agent personalization), and the download totals
_BOUNDED: dict[str, tuple[float, float]] = {
    "personal_gain": (-1.0, 1.0),
    "personal_active": (0.0, 1.0),
    # bytes an install fetched (summed per rollout stage: fleet._rollout_store.shipped_by_stage);
    # not counts by name, so bounded here: at most 1 TiB in one report
    "bytes_downloaded": (0.0, float(2**40)),
    "delta_bytes_downloaded": (0.0, float(2**40)),
}


def _bad(field: str, value: Any, expected: str) -> Refused:
    return Refused(400, "bad_report", f"report {field} {value!r:.60}: expected {expected}")


def _optional_str(report: DeviceReport, name: str, limit: int) -> None:
    value = getattr(report, name)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise _bad(name, value, f"a string of at most {limit} characters or null")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"metric {name!r}", value, "a number")
    out = float(value)
    if not math.isfinite(out):
        raise _bad(f"metric {name!r}", value, "a finite number")
    return out


def _metrics(raw: Any, window_s: float, limits: TelemetryLimits) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise _bad("metrics", raw, "an object of metric names to numbers")
    if len(raw) > limits.max_metrics:
        raise _bad("metrics", f"{len(raw)} names", f"at most {limits.max_metrics}")
    values: dict[str, float] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or len(name) > limits.max_name:
            raise _bad("metric name", name, f"a string of 1 to {limits.max_name} characters")
        values[name] = _number(name, value)
    most = max(window_s, 1.0) * limits.max_rate
    requests = values.get("requests")
    for name, v in values.items():
        if is_count(name):
            if v < 0:
                raise _bad(f"metric {name!r}", v, "a count >= 0")
            if v > most:
                raise _bad(
                    f"metric {name!r}",
                    v,
                    f"at most {most:.0f} in a {window_s:g} s window ({limits.max_rate:g}/s)",
                )
            if name == "errors" and requests is not None and v > requests:
                raise _bad(f"metric {name!r}", v, f"at most requests ({requests:g})")
        elif name.endswith("_rate") and not 0.0 <= v <= 1.0:
            raise _bad(f"metric {name!r}", v, "a rate within [0, 1]")
        elif name in _BOUNDED and not _BOUNDED[name][0] <= v <= _BOUNDED[name][1]:
            lo, hi = _BOUNDED[name]
            raise _bad(f"metric {name!r}", v, f"a value within [{lo:g}, {hi:g}]")
    return values


def _depth(value: Any, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` containers deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level >= limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, level + 1) for c in children)
    return True


def validate_report(report: DeviceReport, limits: TelemetryLimits = TelemetryLimits()) -> None:
    """Refuse (400, ``bad_report``) a report the gates, statistics or dashboard cannot take."""
    _optional_str(report, "model", 200)
    _optional_str(report, "agent_version", 64)
    _optional_str(report, "sent_at", 64)
    version = report.version
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 0
    ):
        raise _bad("version", version, "an int >= 0 or null")
    window = report.window_s
    if isinstance(window, bool) or not isinstance(window, int | float):
        raise _bad("window_s", window, "a number of seconds")
    if not (math.isfinite(window) and 0.0 <= window <= limits.max_window_s):
        raise _bad("window_s", window, f"within [0, {limits.max_window_s:g}] seconds")
    _metrics(report.metrics, float(window), limits)
    if not _depth(report.extra, limits.max_depth):
        raise _bad("extra fields", "...", f"JSON nested at most {limits.max_depth} deep")
