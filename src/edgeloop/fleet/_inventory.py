"""The device list at fleet scale: filters, counts by state and pages, all done by the database.

::

    DeviceQuery.from_params({"version": "kws@2", "health": "offline", "page": "3"})  # 400s
    device_page(s, query, now, stale_after) -> DevicePage(rows, matched, page, pages)
    fleet_counts(s, now, stale_after)       -> {"state": ..., "version": ..., "hardware": ...}

A device's *state* is one word, the same on the overview's health card and in each row:
``revoked``, else ``offline`` (not heard from within ``stale_after``, three poll intervals, or
never), else the health it last reported (``ok``, ``degraded``, ``failing``, ``unknown``).
Filters and counts are SQL (``WHERE``, ``GROUP BY``, ``LIMIT``/``OFFSET`` on the primary key's
order), so a page costs the same at 10,000 devices as at 10; JSON fields (the profile's name,
labels, the installed model) are read with SQLAlchemy's JSON operators, which SQLite and
PostgreSQL both implement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.db import DeviceRow
from edgeloop.fleet._store import Refused

__all__ = [
    "FILTERS",
    "STATES",
    "DevicePage",
    "DeviceQuery",
    "device_page",
    "fleet_counts",
    "human_duration",
    "state_of",
]

STATES = ("ok", "degraded", "failing", "unknown", "offline", "revoked")
FILTERS = ("version", "hardware", "state", "health", "label", "seen", "page", "per_page")
PER_PAGE_MAX = 500
_SEEN = re.compile(r"^([<>])\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TEXT_MAX = 200


def human_duration(seconds: Any) -> str:
    """``31536000`` -> ``"365 d"``, ``90`` -> ``"1.5 min"``, ``0.25`` -> ``"250 ms"``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "-"
    v = float(seconds)
    if not math.isfinite(v):
        return "-"
    sign, v = ("-" if v < 0 else ""), abs(v)
    if v < 1.0:
        text = f"{v * 1000:.3g} ms"
    elif v < 120.0:
        text = f"{v:.3g} s"
    elif v < 2 * 3600.0:
        text = f"{v / 60:.3g} min"
    elif v < 2 * 86400.0:
        text = f"{v / 3600:.3g} h"
    else:
        days = v / 86400
        text = f"{days:.3g} d" if days < 100 else f"{days:.0f} d"
    return sign + text


@dataclass(frozen=True)
class DeviceQuery:
    """The device list's filters and page (each None: not filtered)."""

    version: str | None = None  # "MODEL@VERSION", or "none": nothing installed
    hardware: str | None = None  # the device profile's name
    state: str | None = None  # one of STATES
    label: tuple[str, str] | None = None  # KEY=VALUE
    seen: tuple[str, float] | None = None  # ("<", s): heard from within s; (">", s): not
    page: int = 1
    per_page: int = 100

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> DeviceQuery:
        """From a query string; a bad value is a 400 naming it and what was expected."""

        def text(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            if len(value) > _TEXT_MAX:
                raise Refused(400, "bad_query", f"{name}: at most {_TEXT_MAX} characters")
            if any(ord(c) < 32 or ord(c) == 127 for c in value):  # PostgreSQL refuses NUL
                raise Refused(400, "bad_query", f"{name} {value!r:.60}: expected text without "
                                                "control characters")
            return value or None

        version = text("version")
        if version is not None and version != "none":
            model, sep, number = version.partition("@")
            if not sep or not model or not number.isdigit() or len(number) > 9:
                raise Refused(
                    400, "bad_query", f"version {version!r}: expected MODEL@VERSION or none"
                )
        state = text("state") or text("health")
        if state is not None and state not in STATES:
            raise Refused(400, "bad_query", f"state {state!r}: expected one of {', '.join(STATES)}")
        label = None
        raw_label = text("label")
        if raw_label is not None:
            key, sep, value = raw_label.partition("=")
            if not sep or not key.strip():
                raise Refused(400, "bad_query", f"label {raw_label!r}: expected KEY=VALUE")
            label = (key.strip(), value.strip())
        seen = None
        raw_seen = text("seen")
        if raw_seen is not None:
            m = _SEEN.match(raw_seen)
            if m is None:
                raise Refused(
                    400,
                    "bad_query",
                    f"seen {raw_seen!r}: expected <DURATION (heard from within) or >DURATION "
                    "(not heard from for), e.g. <10m or >1d",
                )
            seconds = float(m.group(2)) * _UNIT_S[m.group(3)]
            if not math.isfinite(seconds) or seconds > 3650 * 86400.0:
                raise Refused(400, "bad_query", f"seen {raw_seen!r}: at most 3650 d")
            seen = (m.group(1), seconds)
        page = _number(params, "page", 1, 1, 1_000_000)
        per_page = _number(params, "per_page", 100, 1, PER_PAGE_MAX)
        return cls(version, text("hardware"), state, label, seen, page, per_page)

    def params(self, **override: Any) -> dict[str, str]:
        """The query string's values (for links to other pages of the same filter)."""
        out: dict[str, str] = {}
        if self.version:
            out["version"] = self.version
        if self.hardware:
            out["hardware"] = self.hardware
        if self.state:
            out["state"] = self.state
        if self.label:
            out["label"] = f"{self.label[0]}={self.label[1]}"
        if self.seen:
            out["seen"] = f"{self.seen[0]}{self.seen[1]:g}s"
        if self.per_page != 100:
            out["per_page"] = str(self.per_page)
        out.update({k: str(v) for k, v in override.items()})
        return out


def _number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Refused(
            400, "bad_query", f"{name} {raw[:20]!r}: expected a whole number from {low} to {high}"
        )
    return int(raw)


@dataclass(frozen=True)
class DevicePage:
    # per device: device_id, name, hardware, arch, installed ("kws@2" or None), state (by
    # the same rule as the counts), health (as reported), last_seen (datetime or None), labels
    rows: list[dict[str, Any]]
    matched: int  # devices matching the filters, over all pages
    page: int
    pages: int
    per_page: int
    # the rows themselves, for a caller still inside the session (the admin API's DeviceInfo)
    records: list[DeviceRow] = field(default_factory=list, compare=False, repr=False)


def _state_expr(now: datetime, stale_after: timedelta) -> sa.ColumnElement[str]:
    """A device's state as SQL: the one rule the counts, the filter and the rows share."""
    cutoff = now - stale_after
    return sa.case(
        (DeviceRow.revoked.is_(True), sa.literal("revoked")),
        (sa.or_(DeviceRow.last_seen.is_(None), DeviceRow.last_seen < cutoff), "offline"),
        else_=DeviceRow.health,
    )


def state_of(device: DeviceRow, now: datetime, stale_after: timedelta) -> str:
    """The same rule in Python, for one device's page."""
    if device.revoked:
        return "revoked"
    seen = device.last_seen
    if seen is not None and seen.tzinfo is None:
        seen = seen.replace(tzinfo=now.tzinfo)
    if seen is None or seen < now - stale_after:
        return "offline"
    return device.health


def _filtered(q: Any, query: DeviceQuery, now: datetime, stale_after: timedelta) -> Any:
    if query.version == "none":
        q = q.where(DeviceRow.installed_version.is_(None))
    elif query.version:
        model, _, number = query.version.partition("@")
        q = q.where(
            DeviceRow.installed_version == int(number),
            DeviceRow.installed["model"].as_string() == model,
        )
    if query.hardware:
        q = q.where(DeviceRow.profile["name"].as_string() == query.hardware)
    if query.state:
        q = q.where(_state_expr(now, stale_after) == query.state)
    if query.label:
        q = q.where(DeviceRow.labels[query.label[0]].as_string() == query.label[1])
    if query.seen:
        op, seconds = query.seen
        cutoff = now - timedelta(seconds=seconds)
        if op == "<":
            q = q.where(DeviceRow.last_seen >= cutoff)
        else:
            q = q.where(sa.or_(DeviceRow.last_seen.is_(None), DeviceRow.last_seen < cutoff))
    return q


def device_page(
    s: Session, query: DeviceQuery, now: datetime, stale_after: timedelta
) -> DevicePage:
    """One page of the devices matching ``query`` (ordered by id), and how many match."""
    state = _state_expr(now, stale_after)
    matched = (
        s.scalar(
            _filtered(sa.select(sa.func.count()).select_from(DeviceRow), query, now, stale_after)
        )
        or 0
    )
    pages = max(1, math.ceil(matched / query.per_page))
    page = min(query.page, pages)
    q = _filtered(sa.select(DeviceRow, state), query, now, stale_after)
    q = q.order_by(DeviceRow.id).limit(query.per_page).offset((page - 1) * query.per_page)
    rows = []
    records = []
    for d, st in s.execute(q).all():
        records.append(d)
        profile = d.profile or {}
        inst = d.installed or {}
        seen = d.last_seen
        rows.append(
            {
                "device_id": d.id,
                "name": d.name,
                "hardware": profile.get("name") or "unknown",
                "arch": profile.get("arch") or "?",
                "installed": f"{inst.get('model')}@{d.installed_version}"
                if d.installed_version is not None
                else None,
                "state": str(st),
                "health": d.health,
                "last_seen": seen.replace(tzinfo=now.tzinfo) if seen and not seen.tzinfo else seen,
                "labels": dict(d.labels or {}),
            }
        )
    return DevicePage(rows, int(matched), page, pages, query.per_page, records)


def fleet_counts(s: Session, now: datetime, stale_after: timedelta) -> dict[str, Any]:
    """Devices by state, by installed version and by hardware: one ``GROUP BY`` over the
    three (a few dozen groups at most), summed here."""
    state = _state_expr(now, stale_after).label("state")
    model = DeviceRow.installed["model"].as_string().label("model")
    name = DeviceRow.profile["name"].as_string().label("name")
    by_state: dict[str, int] = {}
    by_version: dict[str, int] = {}
    by_hardware: dict[str, int] = {}
    q = sa.select(state, model, DeviceRow.installed_version, name, sa.func.count()).group_by(
        state, model, DeviceRow.installed_version, name
    )
    for st, m, v, hw, n in s.execute(q):
        version = f"{m}@{v}" if v is not None and m is not None else "none"
        for counts, key in (
            (by_state, str(st)),
            (by_version, version),
            (by_hardware, str(hw or "unknown")),
        ):
            counts[key] = counts.get(key, 0) + int(n)

    def ordered(d: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))

    return {
        "total": sum(by_state.values()),
        "state": [(k, by_state[k]) for k in STATES if by_state.get(k)]
        + ordered({k: n for k, n in by_state.items() if k not in STATES}),
        "version": ordered(by_version),
        "hardware": ordered(by_hardware),
    }
