"""Rollouts in the database: start, observe, drive (compare-and-set), and the director's policy.

The pure parts are :mod:`._machine` (transitions), :mod:`._gates` (tests) and :mod:`._canary`
(who is in a stage); this module reads their inputs from the tables and writes their outputs
back, inside the caller's transaction. Every state change is one ``UPDATE ... WHERE revision =
<read revision>``: a process that lost the race changes nothing and tries again at its next
tick, so any number of server processes drive rollouts safely and a restart resumes them.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.artifacts import DeviceProfile, RolloutControls, RolloutPlan
from edgeloop.db import (
    DeviceRow,
    ReportRow,
    RolloutCheckRow,
    RolloutDeviceRow,
    RolloutEventRow,
    RolloutRow,
)
from edgeloop.errors import EdgeloopError, RegistryError, RolloutError
from edgeloop.fleet._canary import cohort_matches, device_hash, parse_cohort, stage_cut
from edgeloop.fleet._director import DeviceState, FleetState, Policy, default_policy
from edgeloop.fleet._gates import (
    MONITOR_METRICS,
    DeviceSample,
    GateOptions,
    GateResult,
    evaluate_gate,
    evaluate_group_gate,
    parse_gate,
)
from edgeloop.fleet._machine import (
    ACTIVE,
    IN_EFFECT,
    TERMINAL,
    Observation,
    RolloutStatus,
    Transition,
    command,
    step,
)
from edgeloop.fleet._monitor_store import group_metrics
from edgeloop.fleet._store import desired_versions, generation, list_releases
from edgeloop.protocol import Release, iso_time
from edgeloop.registry import set_alias, suite_regression

__all__ = [
    "CANARY_ALIAS",
    "EVALUATION_GATE",
    "FAILURES_GATE",
    "act",
    "Plan",
    "any_in_effect",
    "apply_ticks",
    "device_counts",
    "drive",
    "get_rollout",
    "LatestRollouts",
    "list_rollouts",
    "plan_ticks",
    "policy_for",
    "rollout_dict",
    "set_controls",
    "shipped_by_stage",
    "start_rollout",
]

CANARY_ALIAS = "canary"  # the registry alias that follows a rollout's new version
EVALUATION_GATE = "(evaluation)"  # the check recorded when evaluating a rollout raised
FAILURES_GATE = "(install failures)"  # the check of the controls' failure thresholds

_log = logging.getLogger("edgeloop.fleet.rollout")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _iso(value: datetime | None) -> str | None:
    v = _utc(value)
    return iso_time(v) if v is not None else None


@dataclass(frozen=True)
class _Device:
    device_id: str
    profile: DeviceProfile | None
    labels: Mapping[str, str]
    installed_version: int | None


def _eligible(s: Session, row: RolloutRow) -> list[_Device]:
    """The rollout's model's devices (not revoked) inside its cohort."""
    q = sa.select(
        DeviceRow.id, DeviceRow.profile, DeviceRow.labels, DeviceRow.installed_version
    ).where(
        DeviceRow.revoked.is_(False),
        sa.or_(DeviceRow.model == row.model, DeviceRow.model.is_(None)),
    )
    cohort = dict(row.cohort)
    out = []
    for device_id, profile, labels, installed in s.execute(q):
        prof = DeviceProfile.from_dict(profile) if (cohort and profile) else None
        if cohort and not cohort_matches(cohort, prof, labels or {}):
            continue
        out.append(_Device(device_id, prof, labels or {}, installed))
    return out


def _status(row: RolloutRow) -> RolloutStatus:
    return RolloutStatus(
        state=row.state,
        stage=row.stage,
        stages=tuple(float(p) for p in row.stages),
        soak_s=row.soak_s,
        stage_started_at=_utc(row.stage_started_at) or row.stage_started_at,
        soak_started_at=_utc(row.soak_started_at),
        state_since=_utc(row.state_since),
    )


def _controls(row: RolloutRow | RolloutView) -> RolloutControls:
    return RolloutControls.from_dict(row.controls or {})


def _options(row: RolloutRow) -> GateOptions:
    known = {k: v for k, v in row.options.items() if k in GateOptions.__dataclass_fields__}
    return GateOptions(**known)


# --- start ----------------------------------------------------------------------------------


def _check_plan(plan: RolloutPlan) -> None:
    stages = list(plan.stages)
    if not stages or any(not 0 < p <= 100 for p in stages) or stages != sorted(set(stages)):
        raise RolloutError(f"stages {stages}: expected increasing percents in (0, 100]")
    if stages[-1] != 100:
        raise RolloutError(f"stages {stages}: the last stage must be 100 (percent of the cohort)")
    if plan.soak_s < 0:
        raise RolloutError(f"soak {plan.soak_s} s: expected >= 0")
    for text in plan.gates:
        parse_gate(text)


def start_rollout(
    s: Session,
    plan: RolloutPlan,
    *,
    alias: str,
    now: datetime,
    options: GateOptions = GateOptions(),
    switch_timeout_s: float = 180.0,
    actor: str = "fleet-admin",
    controls: RolloutControls = RolloutControls(),
) -> RolloutRow:
    """Create a rollout of ``plan.model@plan.version`` from the alias's current version."""
    _check_plan(plan)
    model, version = plan.model, plan.version
    if all(r.version != version for r in list_releases(s, [model])):
        raise RolloutError(f"{model}@{version} is not published; publish it before a rollout")
    current = desired_versions(s, alias, model).get(model)
    if current is None:
        raise RolloutError(
            f"model {model!r} has no {alias!r} version to roll out from; set one first "
            "(edgeloop fleet desired MODEL@VERSION)"
        )
    if current == version:
        raise RolloutError(f"{model}@{version} is already the {alias!r} version")
    try:  # continuous evaluation: the candidate against the alias's version on the model's suite
        worse = suite_regression(s, model, version, current)
    except RegistryError as e:
        raise RolloutError(f"{model}@{version} refused: {e}") from e
    if worse is not None:
        raise RolloutError(worse.message(alias))
    busy = s.scalars(
        sa.select(RolloutRow.id).where(RolloutRow.model == model, RolloutRow.state.in_(IN_EFFECT))
    ).first()
    if busy is not None:
        raise RolloutError(f"rollout {busy} of {model!r} is still in effect; abort it first")
    row = RolloutRow(
        model=model,
        from_version=current,
        to_version=version,
        stages=[float(p) for p in plan.stages],
        soak_s=float(plan.soak_s),
        gates=list(plan.gates),
        cohort=parse_cohort(plan.cohort),
        options={
            **options.to_dict(),
            "switch_timeout_s": float(switch_timeout_s),
            "alias": alias,
        },
        controls=controls.to_dict(),
        salt=secrets.token_hex(8),
        state="running",
        stage=0,
        cut=0.0,
        stage_devices=0,
        reason="started",
        created_by=actor,
        created_at=now,
        stage_started_at=now,
        soak_started_at=None,
        state_since=now,
        finished_at=None,
        revision=0,
    )
    s.add(row)
    s.flush()
    _cut(s, row)
    row.reason = f"stage 1 ({row.stages[0]:g}%): {row.stage_devices} device(s)"
    data: dict[str, Any] = {"plan": plan.to_dict()}
    if controls.tracked:
        data["controls"] = controls.to_dict()
    _event(s, row, "start", None, now, actor, data)
    set_alias(s, model, CANARY_ALIAS, version, reason=f"rollout {row.id} started", actor="rollout")
    return row


def _cut(s: Session, row: RolloutRow) -> None:
    devices = _eligible(s, row)
    pct = float(row.stages[row.stage])
    row.cut = stage_cut([device_hash(row.salt, d.device_id) for d in devices], pct)
    row.stage_devices = sum(1 for d in devices if device_hash(row.salt, d.device_id) <= row.cut)


def _event(
    s: Session,
    row: RolloutRow,
    kind: str,
    from_state: str | None,
    now: datetime,
    actor: str,
    data: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    s.add(
        RolloutEventRow(
            rollout_id=row.id,
            at=now,
            kind=kind,
            from_state=from_state,
            to_state=row.state,
            stage=row.stage,
            reason=row.reason if reason is None else reason,
            actor=actor,
            data=dict(data or {}),
        )
    )


# --- observe and drive ----------------------------------------------------------------------


def _samples(
    s: Session, row: RolloutRow, version: int, since: datetime, devices: Iterable[str] | None
) -> list[DeviceSample]:
    q = sa.select(ReportRow.device_id, ReportRow.metrics).where(
        ReportRow.model == row.model,
        ReportRow.version == version,
        ReportRow.received_at >= since,
    )
    keep = set(devices) if devices is not None else None
    by_device: dict[str, list[Mapping[str, float]]] = defaultdict(list)
    for device_id, metrics in s.execute(q):
        if keep is None or device_id in keep:
            by_device[device_id].append(metrics or {})
    return [DeviceSample(d, tuple(r)) for d, r in by_device.items()]


def observe(s: Session, row: RolloutRow, now: datetime) -> Observation:
    devices = _eligible(s, row)
    stage = [d for d in devices if device_hash(row.salt, d.device_id) <= row.cut]
    control_ids = [d.device_id for d in devices if device_hash(row.salt, d.device_id) > row.cut]
    opts = _options(row)
    since = _utc(row.stage_started_at) or now
    gates: list[GateResult] = []
    if row.state in ACTIVE and row.gates:
        treatment = _samples(s, row, row.to_version, since, [d.device_id for d in stage])
        control = _samples(s, row, row.from_version, since, control_ids)
        if sum(1 for c in control if c.reports) < opts.min_devices:
            # a 100 % stage has no control left: the previous version's latest reports
            lookback = since - timedelta(seconds=max(row.soak_s, 60.0) * 2)
            control = _samples(s, row, row.from_version, lookback, None)
        gates = []
        for text in row.gates:
            gate = parse_gate(text)
            if gate.metric in MONITOR_METRICS:  # from the groups' merged monitoring sketches
                stage_ids = {d.device_id for d in stage}
                t = group_metrics(s, row.model, row.to_version, stage_ids, since)
                c = group_metrics(s, row.model, row.from_version, set(control_ids), since)
                gates.append(
                    evaluate_group_gate(
                        gate, t, c, devices=len(stage_ids), control_devices=len(control_ids),
                        alpha=opts.alpha,
                    )
                )
            else:
                gates.append(evaluate_gate(gate, treatment, control, opts, stage_size=len(stage)))
    controls = _controls(row)
    if row.state in ACTIVE:
        failures = _failure_check(s, row, controls, len(stage))
        if failures is not None:
            gates.insert(0, failures)
    switch = float(row.options.get("switch_timeout_s", 180.0))
    if controls.max_per_minute:  # a rate-limited stage needs this long to hand its version out
        switch += 60.0 * math.ceil(len(stage) / controls.max_per_minute)
    return Observation(
        now=now,
        stage_devices=len(stage),
        on_new=sum(1 for d in stage if d.installed_version == row.to_version),
        still_new=sum(1 for d in devices if d.installed_version == row.to_version),
        gates=gates,
        switch_timeout_s=switch,
    )


def _failure_check(
    s: Session, row: RolloutRow, controls: RolloutControls, stage_devices: int
) -> GateResult | None:
    """hawkBit's error threshold: more than ``max_failures`` devices, or more than
    ``max_failure_rate`` of the stage, failed to install the version or fell back from it."""
    n, rate = controls.max_failures, controls.max_failure_rate
    if n is None and rate is None:
        return None
    failed = device_counts(s, row.id).get("failed", 0)
    share = failed / stage_devices if stage_devices else 0.0
    limits = []
    if n is not None:
        limits.append(f"at most {n} device(s)")
    if rate is not None:
        limits.append(f"at most {rate:.4g} of the stage's {stage_devices}")
    over = (n is not None and failed > n) or (rate is not None and share > rate)
    why = f"{failed} device(s) failed to install or fell back ({share:.1%} of the stage); "
    why += " and ".join(limits) + " allowed"
    return GateResult(
        FAILURES_GATE,
        "fail" if over else "pass",
        float(failed),
        None,
        float(n) if n is not None else None,
        stage_devices,
        0,
        reason=why,
        extra={"failed": failed, "share": share, "max_failure_rate": rate},
    )


def device_counts(s: Session, rollout_id: int) -> dict[str, int]:
    """The rollout's tracked devices by state: downloading, installed, failed."""
    q = (
        sa.select(RolloutDeviceRow.state, sa.func.count())
        .where(RolloutDeviceRow.rollout_id == rollout_id)
        .group_by(RolloutDeviceRow.state)
    )
    return {state: int(n) for state, n in s.execute(q)}


def _apply(s: Session, row: RolloutRow, t: Transition, now: datetime, actor: str) -> bool:
    """Write ``t`` with a compare-and-set on the revision; False when another process won."""
    before, revision = row.state, row.revision
    values: dict[str, Any] = {
        "state": t.state,
        "stage": t.stage,
        "reason": t.reason,
        "state_since": now,
        "revision": revision + 1,
    }
    if t.soak_starts:
        values["soak_started_at"] = now
    if t.new_stage or t.kind == "resume":
        values["stage_started_at"] = now
        values["soak_started_at"] = None
    if t.state in TERMINAL:
        values["finished_at"] = now
    done = s.execute(
        sa.update(RolloutRow)
        .where(RolloutRow.id == row.id, RolloutRow.revision == revision)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) != 1:
        return False
    s.refresh(row)
    if t.new_stage:
        _cut(s, row)
        row.reason = f"{t.reason}; stage {row.stage + 1} ({row.stages[row.stage]:g}%): " + (
            f"{row.stage_devices} device(s)"
        )
    _event(s, row, t.kind, before, now, actor, {"gates": [g.to_dict() for g in t.gates]})
    _record_aliases(s, row, t, before)
    return True


def _record_aliases(s: Session, row: RolloutRow, t: Transition, before: str) -> None:
    """Rollbacks and completions move aliases; each move goes into the alias history.

    A rollback moves the aliases back to the rollout's ``from_version``: a ``revert``.
    """
    try:
        if t.kind in ("gate_failed", "rollback", "abort"):
            action = None if t.kind == "abort" else "revert"
            set_alias(
                s,
                row.model,
                CANARY_ALIAS,
                row.from_version,
                reason=f"rollout {row.id}: {t.reason}",
                actor="rollout",
                action=action,
            )
        if t.kind == "rollback" and before == "completed" and not row.cohort:
            set_alias(
                s,
                row.model,
                str(row.options.get("alias", "production")),
                row.from_version,
                reason=f"rollout {row.id}: {t.reason}",
                actor="rollout",
                action="revert",
            )
        if t.kind == "complete" and not row.cohort:
            set_alias(
                s,
                row.model,
                str(row.options.get("alias", "production")),
                row.to_version,
                reason=f"rollout {row.id} completed: {t.reason}",
                actor="rollout",
            )
    except EdgeloopError as e:
        raise RolloutError(f"rollout {row.id}: cannot record alias move ({e})") from e


def _record_checks(s: Session, row: RolloutRow, gates: Sequence[GateResult], now: datetime) -> None:
    for g in gates:
        s.add(
            RolloutCheckRow(
                rollout_id=row.id,
                at=now,
                stage=row.stage,
                gate=g.gate,
                status=g.status,
                treatment=g.treatment,
                control=g.control,
                bound=g.bound,
                result=g.to_dict(),
            )
        )


def any_in_effect(s: Session) -> bool:
    q = sa.select(RolloutRow.id).where(RolloutRow.state.in_(IN_EFFECT)).limit(1)
    return s.scalars(q).first() is not None


@dataclass(frozen=True)
class Plan:
    """What one tick decided for one rollout, from a read: applied later by compare-and-set."""

    rollout_id: int
    revision: int
    gates: tuple[GateResult, ...]
    transition: Transition | None


def plan_ticks(s: Session, now: datetime) -> list[Plan]:
    """Observe every rollout in effect and decide (reads only: no write lock held meanwhile).

    A rollout whose evaluation raises is logged and gets an ``error`` check naming the failure
    (its state stays as it is); the other rollouts are still observed and driven.
    """
    out = []
    for row in s.scalars(sa.select(RolloutRow).where(RolloutRow.state.in_(IN_EFFECT))).all():
        try:
            obs = observe(s, row, now)
            out.append(Plan(row.id, row.revision, tuple(obs.gates), step(_status(row), obs)))
        except Exception as e:  # one rollout's bad data must not stop the others
            _log.exception("rollout %s: evaluation failed", row.id)
            out.append(Plan(row.id, row.revision, (_evaluation_error(e),), None))
    return out


def _evaluation_error(e: Exception) -> GateResult:
    reason = f"evaluation failed: {type(e).__name__}: {e}"[:500]
    return GateResult(EVALUATION_GATE, "error", None, None, None, 0, 0, reason=reason)


def apply_ticks(s: Session, plans: Sequence[Plan], now: datetime) -> list[tuple[int, str]]:
    """Write the plans whose rollout did not change since they were read; returns the changes."""
    changed = []
    for p in plans:
        row = s.get(RolloutRow, p.rollout_id)
        if row is None or row.revision != p.revision:
            continue  # another process (or an admin) moved it: the next tick looks again
        _record_checks(s, row, p.gates, now)
        if p.transition is not None and _apply(s, row, p.transition, now, "rollout"):
            changed.append((row.id, p.transition.state))
    return changed


def drive(s: Session, now: datetime) -> list[tuple[int, str]]:
    """One tick in one transaction: observe, step, apply. Returns what changed."""
    return apply_ticks(s, plan_ticks(s, now), now)


def act(
    s: Session, rollout_id: int, action: str, reason: str, actor: str, now: datetime
) -> RolloutRow:
    """An admin's pause, resume, abort or rollback (RolloutError when the state forbids it)."""
    row = get_rollout(s, rollout_id)
    t = command(_status(row), action, reason)
    if not _apply(s, row, t, now, actor):
        raise RolloutError(f"rollout {rollout_id} changed meanwhile; try again")
    return row


def set_controls(
    s: Session,
    rollout_id: int,
    controls: RolloutControls,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> RolloutRow:
    """An operator's new controls for a rollout still in effect (rate, concurrent downloads,
    window, failure thresholds; None turns one off), with a ``controls`` event in its
    timeline naming the old and the new. RolloutError once it finished, or when another
    process changed it meanwhile. Devices admitted before a control was turned on are
    counted from their next check-in on."""
    row = get_rollout(s, rollout_id)
    if row.state not in IN_EFFECT:
        raise RolloutError(f"rollout {rollout_id} is {row.state}: its controls no longer apply")
    before, after = dict(row.controls or {}), controls.to_dict()
    done = s.execute(
        sa.update(RolloutRow)
        .where(RolloutRow.id == row.id, RolloutRow.revision == row.revision)
        .values(controls=after, revision=row.revision + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) != 1:
        raise RolloutError(f"rollout {rollout_id} changed meanwhile; try again")
    s.refresh(row)
    changed = ", ".join(
        f"{k} {before.get(k)!r} -> {after.get(k)!r}"
        for k in after
        if before.get(k, RolloutControls().to_dict().get(k)) != after.get(k)
    )
    _event(
        s, row, "controls", row.state, now, actor, {"before": before, "after": after},
        reason=(reason or f"controls changed: {changed or 'no change'}")[:500],
    )  # fmt: skip
    return row


# --- reads ----------------------------------------------------------------------------------


def get_rollout(s: Session, rollout_id: int) -> RolloutRow:
    row = s.get(RolloutRow, rollout_id)
    if row is None:
        raise RolloutError(f"no rollout {rollout_id} in this fleet")
    return row


def list_rollouts(s: Session, model: str | None = None, limit: int = 100) -> list[RolloutRow]:
    q = sa.select(RolloutRow).order_by(RolloutRow.id.desc()).limit(limit)
    if model:
        q = q.where(RolloutRow.model == model)
    return list(s.scalars(q))


_SHIPPED = (
    ("bytes", "bytes_downloaded"),
    ("delta_bytes", "delta_bytes_downloaded"),
    ("delta_updates", "delta_updates"),
    ("delta_fallbacks", "delta_fallbacks"),
)


def shipped_by_stage(s: Session, row: RolloutRow) -> list[dict[str, Any]]:
    """Bytes the devices downloaded to install the rollout's version, per stage.

    Agents count ``bytes_downloaded`` (everything fetched for an install, delta or full),
    ``delta_bytes_downloaded``, ``delta_updates`` and ``delta_fallbacks`` and report them with
    the version they then run; a report of ``to_version`` counts toward the stage that was
    current when it arrived (stages start at their first event).
    """
    created = _utc(row.created_at)
    assert created is not None
    starts: dict[int, datetime] = {0: created}
    for at, stage in s.execute(
        sa.select(RolloutEventRow.at, RolloutEventRow.stage)
        .where(RolloutEventRow.rollout_id == row.id)
        .order_by(RolloutEventRow.id)
    ):
        when = _utc(at)
        if when is not None:
            starts.setdefault(int(stage), when)
    order = sorted(starts.items(), key=lambda kv: (kv[1], kv[0]))
    out = {
        k: {"stage": k, "percent": row.stages[k], "devices": 0, **{n: 0 for n, _ in _SHIPPED}}
        for k in range(min(max(starts) + 1, len(row.stages)))
    }
    devices: dict[int, set[str]] = defaultdict(set)
    q = sa.select(ReportRow.device_id, ReportRow.received_at, ReportRow.metrics).where(
        ReportRow.model == row.model,
        ReportRow.version == row.to_version,
        ReportRow.received_at >= created,
    )
    for device_id, received, metrics in s.execute(q):
        m = metrics or {}
        got = {n: m.get(key) for n, key in _SHIPPED}
        if not any(isinstance(v, int | float) and v > 0 for v in got.values()):
            continue
        when = _utc(received)
        stage = next((k for k, t in reversed(order) if when is not None and t <= when), 0)
        entry = out.setdefault(
            stage,
            {
                "stage": stage,
                "percent": row.stages[stage],
                "devices": 0,
                **{n: 0 for n, _ in _SHIPPED},
            },
        )
        for n, v in got.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
                entry[n] += int(v)
        devices[stage].add(device_id)
    for k, ids in devices.items():
        out[k]["devices"] = len(ids)
    return [out[k] for k in sorted(out)]


def rollout_dict(s: Session, row: RolloutRow, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "model": row.model,
        "from_version": row.from_version,
        "to_version": row.to_version,
        "stages": list(row.stages),
        "stage": row.stage,
        "stage_percent": row.stages[row.stage],
        "stage_devices": row.stage_devices,
        "soak_s": row.soak_s,
        "gates": list(row.gates),
        "cohort": dict(row.cohort),
        "options": dict(row.options),
        "controls": dict(row.controls or {}),
        "state": row.state,
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": _iso(row.created_at),
        "stage_started_at": _iso(row.stage_started_at),
        "soak_started_at": _iso(row.soak_started_at),
        "state_since": _iso(row.state_since),
        "finished_at": _iso(row.finished_at),
        "revision": row.revision,
    }
    if _controls(row).tracked:
        out["devices"] = {"downloading": 0, "installed": 0, "failed": 0, **device_counts(s, row.id)}
    if detail:
        events = s.scalars(
            sa.select(RolloutEventRow)
            .where(RolloutEventRow.rollout_id == row.id)
            .order_by(RolloutEventRow.id)
        )
        out["events"] = [
            {
                "at": _iso(e.at),
                "kind": e.kind,
                "from_state": e.from_state,
                "to_state": e.to_state,
                "stage": e.stage,
                "reason": e.reason,
                "actor": e.actor,
            }
            for e in events
        ]
        checks = s.scalars(
            sa.select(RolloutCheckRow)
            .where(RolloutCheckRow.rollout_id == row.id)
            .order_by(RolloutCheckRow.id.desc())
            .limit(2000)
        ).all()
        out["shipped"] = shipped_by_stage(s, row)
        out["checks"] = [
            {
                "at": _iso(c.at),
                "stage": c.stage,
                "gate": c.gate,
                "status": c.status,
                "treatment": c.treatment,
                "control": c.control,
                "bound": c.bound,
                "devices": c.result.get("devices"),
                "control_devices": c.result.get("control_devices"),
                "reason": c.result.get("reason"),
            }
            for c in reversed(checks)
        ]
    return out


# --- the director's policy ------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutView:
    """What the director's policy reads of a model's newest rollout (:class:`LatestRollouts`)."""

    id: int
    model: str
    from_version: int
    to_version: int
    stages: list[Any]
    cohort: dict[str, Any]
    controls: dict[str, Any]
    salt: str
    state: str
    stage: int
    cut: float
    reason: str


_ROLLOUTS: Any = RolloutRow.__table__
_LATEST = (
    sa.select(*(_ROLLOUTS.c[f] for f in RolloutView.__dataclass_fields__))
    .where(_ROLLOUTS.c.model == sa.bindparam("model"))
    .order_by(_ROLLOUTS.c.id.desc())
    .limit(1)
)


class LatestRollouts:
    """Each model's newest rollout, kept in this process while the database's generation
    counter stays where it was (triggers on ``fleet_rollouts``, revision 0014, bump it with
    every rollout started, moved on, paused or changed, from any process): one read per
    model per change instead of one per check-in."""

    def __init__(self) -> None:
        self._generation: int | None = None
        self._kept: dict[str, RolloutView | None] = {}
        self._lock = threading.Lock()
        self.reads = 0

    def get(self, s: Session, model: str) -> RolloutView | None:
        gen = generation(s)
        with self._lock:
            if gen is None or gen != self._generation:
                self._kept.clear()
                self._generation = gen
            if model in self._kept:
                return self._kept[model]
        row = s.execute(_LATEST, {"model": model}).first()
        view = None if row is None else RolloutView(**row._asdict())
        with self._lock:
            self.reads += 1
            if gen is not None and gen == self._generation:
                self._kept[model] = view
        return view


def _newest(s: Session, model: str) -> RolloutView | None:
    row = s.execute(_LATEST, {"model": model}).first()
    return None if row is None else RolloutView(**row._asdict())


def policy_for(
    s: Session, now: datetime | None = None, latest: LatestRollouts | None = None
) -> Policy:
    """The director's policy for one check-in: a device in a rollout's stage gets its version,
    when the rollout's controls (rate, concurrent downloads, window) let it have it now.
    ``latest``: this process's kept newest rollouts (else read per call)."""
    at = now or datetime.now(timezone.utc)

    def policy(device: DeviceState, model: str, fleet: FleetState) -> tuple[Release, str] | None:
        row = latest.get(s, model) if latest is not None else _newest(s, model)
        base = default_policy(device, model, fleet)
        if row is None:
            return base
        cohort = dict(row.cohort)
        member = cohort_matches(cohort, device.profile, device.labels)
        in_stage = (
            row.state in ACTIVE and member and device_hash(row.salt, device.device_id) <= row.cut
        )
        takes_new = in_stage or bool(row.state == "completed" and cohort and member)
        if takes_new and in_stage:
            controls = _controls(row)
            if controls.tracked:
                takes_new = _admit(s, row, controls, device, at)
        if takes_new:
            release = fleet.release(model, row.to_version)
            if release is not None:
                pct = row.stages[row.stage]
                return release, f"rollout {row.id} stage {row.stage + 1} ({pct:g}%)"
        if base is not None and row.state in ("failed", "rolled_back", "aborted"):
            release, reason = base
            if release.version == row.from_version:
                return release, f"rollout {row.id} {row.state}: {row.reason}"[:300]
        return base

    return policy


def _failure_of(row: RolloutRow | RolloutView, device: DeviceState) -> str | None:
    """The agent's report that it refused the rollout's version (verification or self-test)
    or fell back from it (the trial's error limit), also when both happened between two
    check-ins. A transient failure the agent retries (a full disk, a bad download) is not one."""
    error = device.last_error or ""
    version = f"{row.model}@{row.to_version}"
    if f"{version} refused" in error or f"{version} fell back" in error:
        return error[:500]
    return None


def _track(
    rec: RolloutDeviceRow, row: RolloutRow | RolloutView, device: DeviceState, now: datetime
) -> None:
    """Move a tracked device on from what its check-in says."""
    installed = device.installed
    on_new = installed is not None and installed.version == row.to_version
    if rec.state == "downloading":
        failure = _failure_of(row, device)
        if on_new:
            rec.state, rec.finished_at = "installed", now
        elif failure is not None:
            rec.state, rec.finished_at, rec.detail = "failed", now, failure
    elif rec.state == "installed" and not on_new and installed is not None:
        rec.state, rec.finished_at = "failed", now
        rec.detail = f"fell back from {row.model}@{row.to_version}: {device.last_error or ''}"[:500]


def _admit(
    s: Session,
    row: RolloutRow | RolloutView,
    controls: RolloutControls,
    device: DeviceState,
    now: datetime,
) -> bool:
    """Whether a stage device gets the new version at this check-in under the controls; the
    first time it does is recorded (the rate limit and concurrent downloads count those)."""
    rec = s.get(RolloutDeviceRow, (row.id, device.device_id))
    if rec is not None:
        _track(rec, row, device, now)
        return rec.state != "failed"  # a failed device stays on (or goes back to) the old one
    installed = device.installed
    if installed is not None and installed.version == row.to_version:
        return True  # it runs the version already: nothing to hand out, nothing to count
    if not controls.in_window(now, device.labels):
        return False
    if controls.max_per_minute is not None:
        recent = s.scalar(
            sa.select(sa.func.count())
            .select_from(RolloutDeviceRow)
            .where(
                RolloutDeviceRow.rollout_id == row.id,
                RolloutDeviceRow.assigned_at > now - timedelta(minutes=1),
            )
        )
        if (recent or 0) >= controls.max_per_minute:
            return False
    if controls.max_concurrent_downloads is not None:
        busy = s.scalar(
            sa.select(sa.func.count())
            .select_from(RolloutDeviceRow)
            .where(
                RolloutDeviceRow.rollout_id == row.id,
                RolloutDeviceRow.state == "downloading",
                RolloutDeviceRow.assigned_at > now - timedelta(seconds=controls.download_timeout_s),
            )
        )
        if (busy or 0) >= controls.max_concurrent_downloads:
            return False
    s.add(
        RolloutDeviceRow(
            rollout_id=row.id,
            device_id=device.device_id,
            stage=row.stage,
            assigned_at=now,
            state="downloading",
            finished_at=None,
            detail=None,
        )
    )
    s.flush()
    return True
