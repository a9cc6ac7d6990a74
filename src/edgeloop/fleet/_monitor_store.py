"""Monitoring in the fleet server: references, sketches, evaluations and alerts in the database.

* **References**: each published version's reference is taken from its signed bundle manifest
  when the release is published (:func:`store_bundle_reference`); an admin may re-baseline a
  version explicitly (:func:`rebaseline`), which is recorded with its reason and actor and in
  the registry's lineage. Sketches are checked against the newest reference of the version.
* **Sketches**: a telemetry report's optional ``sketch`` is validated against the reference of
  the version the report claims (:func:`check_sketch`; a refusal is a 400 with the reason and
  stores nothing), then merged into its window's row with the device's labels by the
  group commit of the device writes (:func:`store_sketches`, ``_batch.CheckinWriter``).
* **Evaluations**: :func:`evaluate` merges the last window's sketches of a version by cohort
  (every device, and each value of each device label), runs
  :func:`edgeloop.monitor.drift.drift_report`, stores the result, and steps each cohort's
  alert with hysteresis (:func:`edgeloop.monitor.drift.step_alert`). The statistics are pure
  (``monitor.drift``); this module is the database at their edge.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.artifacts import DeviceReport, DriftReport
from edgeloop.db import (
    DeviceRow,
    MonitorAlertRow,
    MonitorEvaluationRow,
    MonitorEventRow,
    MonitorReferenceRow,
    MonitorSketchRow,
)
from edgeloop.errors import EdgeloopError, RegistryError, SketchError
from edgeloop.fleet._store import DeviceFields, Refused
from edgeloop.monitor.drift import (
    AlertPolicy,
    AlertState,
    DeviceSketch,
    DriftOptions,
    drift_report,
    report_metrics,
    step_alert,
    validate_sketch,
)
from edgeloop.monitor.sketch import MonitorReference, WindowSketch
from edgeloop.registry import add_lineage_ref

__all__ = [
    "ALL",
    "CohortResult",
    "alerts",
    "cohort_key",
    "cohort_reports",
    "evaluate",
    "evaluations",
    "events",
    "group_metrics",
    "latest_reference",
    "monitored_versions",
    "PendingSketch",
    "Tested",
    "check_sketch",
    "rebaseline",
    "record_evaluation",
    "record_sketch",
    "sketches",
    "store_bundle_reference",
    "store_sketches",
    "sweep",
    "sweep_sketches",
]

ALL = "*"  # the cohort of every device of a version
MAX_COHORT_VALUES = 50  # a label with more distinct values (a serial number) is no cohort
_IGNORED_LABELS = frozenset({"simulated"})

# parsed references by digest: parsing one is the costly part of validating a sketch
_CACHE: OrderedDict[str, MonitorReference] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 64


def cohort_key(label: str | None, value: str | None) -> str:
    return ALL if label is None else f"{label}={value}"


def _parse(row: MonitorReferenceRow) -> MonitorReference:
    with _CACHE_LOCK:
        ref = _CACHE.get(row.sha256)
        if ref is not None:
            _CACHE.move_to_end(row.sha256)
            return ref
    ref = MonitorReference.from_json(row.reference)
    with _CACHE_LOCK:
        _CACHE[row.sha256] = ref
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return ref


# --- references --------------------------------------------------------------------------


def _latest_row(s: Session, model: str, version: int) -> MonitorReferenceRow | None:
    return s.scalars(
        sa.select(MonitorReferenceRow)
        .where(MonitorReferenceRow.model == model, MonitorReferenceRow.version == version)
        .order_by(MonitorReferenceRow.id.desc())
        .limit(1)
    ).first()


def latest_reference(s: Session, model: str, version: int) -> MonitorReference | None:
    row = _latest_row(s, model, version)
    return None if row is None else _parse(row)


def _add_reference(s: Session, model: str, version: int, ref: MonitorReference, origin: str,
                   reason: str, actor: str, now: datetime) -> MonitorReferenceRow:
    row = MonitorReferenceRow(model=model, version=version, sha256=ref.digest(),
                              reference=ref.to_json().decode(), origin=origin, reason=reason,
                              created_by=actor, created_at=now)
    s.add(row)
    s.flush()
    return row


def store_bundle_reference(s: Session, model: str, version: int,
                           monitor: Mapping[str, Any] | None, now: datetime) -> bool:
    """Keep the reference a published bundle's signed manifest carries (the first one of a
    version; a re-baseline later supersedes it). False when the bundle has none."""
    if monitor is None:
        return False
    try:
        ref = MonitorReference.from_dict(monitor)
    except EdgeloopError as e:
        raise Refused(409, "bad_reference", f"{model}@{version}: monitoring reference: {e}") from e
    if _latest_row(s, model, version) is None:
        _add_reference(s, model, version, ref, "bundle", "packed with the bundle", "publish", now)
        with contextlib.suppress(RegistryError):
            add_lineage_ref(s, model, version, "monitor_reference", ref.digest())
    return True


def rebaseline(s: Session, model: str, version: int, reference: bytes, reason: str,
               actor: str, now: datetime) -> MonitorReferenceRow:
    """Give ``model@version`` a new reference (e.g. the data it was fine-tuned on): explicit,
    with a reason, recorded in the reference history and the registry's lineage."""
    if not reason.strip():
        raise Refused(400, "bad_body", "re-baselining needs a reason")
    try:
        ref = MonitorReference.from_json(reference)
    except EdgeloopError as e:
        raise Refused(400, "bad_reference", str(e)) from e
    before = _latest_row(s, model, version)
    if before is None:
        raise Refused(404, "not_found", f"{model}@{version} has no monitoring reference to "
                                        "re-baseline; publish a bundle packed with one")
    row = _add_reference(s, model, version, ref, "rebaseline", reason, actor, now)
    _record_lineage(s, model, version, before.sha256, ref.digest(), reason)
    return row


def _record_lineage(s: Session, model: str, version: int, old: str, new: str,
                    reason: str) -> None:
    # a release whose version left the registry: the reference history still has it
    with contextlib.suppress(RegistryError):
        add_lineage_ref(s, model, version, "monitor_rebaseline", new,
                        f"{reason} (was {old[:12]})")


# --- sketches ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingSketch:
    """A telemetry report's sketch, validated, waiting for the group commit to merge it into
    its window's row (:func:`store_sketches`)."""

    device_id: str
    model: str
    version: int
    reference_sha256: str
    window: int
    received_at: datetime
    labels: Mapping[str, Any]
    sketch: WindowSketch
    reference: MonitorReference

    @property
    def key(self) -> tuple[str, str, int, int, str]:
        return (self.device_id, self.model, self.version, self.window, self.reference_sha256)


def check_sketch(s: Session, device: DeviceFields, report: DeviceReport, now: datetime, *,
                 window_s: float) -> PendingSketch | None:
    """Validate the report's sketch (None when it carries none) against the newest reference
    of the version it names. Refused (400, with the reason) when it cannot be checked or is
    malformed. Writes nothing: :func:`store_sketches` does, in the group commit."""
    data = report.sketch
    if data is None:
        return None
    if not isinstance(report.model, str) or not isinstance(report.version, int):
        raise Refused(400, "bad_sketch", "a sketch needs the report's model and version")
    ref = latest_reference(s, report.model, report.version)
    if ref is None:
        raise Refused(400, "no_reference", f"{report.model}@{report.version} has no "
                                           "monitoring reference on this server")
    try:
        sketch = validate_sketch(data, ref)
    except SketchError as e:
        raise Refused(400, "bad_sketch", str(e)) from e
    return PendingSketch(device_id=device.id, model=report.model, version=report.version,
                         reference_sha256=sketch.reference_sha256,
                         window=int(now.timestamp() // window_s), received_at=now,
                         labels=dict(device.labels or {}), sketch=sketch, reference=ref)


def sweep_sketches(s: Session, device_ids: Iterable[str], before: datetime) -> None:
    """Drop these devices' sketch rows last updated before ``before`` (the retention)."""
    ids = sorted(set(device_ids))
    if ids:
        s.execute(sa.delete(MonitorSketchRow).where(MonitorSketchRow.device_id.in_(ids),
                                                    MonitorSketchRow.received_at < before))


def store_sketches(s: Session, items: Sequence[PendingSketch]) -> int:
    """Merge validated sketches into their window rows: one row per device, version, reference
    and server window (sketches merge by addition, so storage grows with windows, not
    reports). Sketches of one key in ``items`` are added up first; one query reads the rows
    they extend. The rows inserted or updated."""
    merged: dict[tuple[str, str, int, int, str], PendingSketch] = {}
    for item in items:
        held = merged.get(item.key)
        merged[item.key] = item if held is None else replace(
            item, sketch=held.sketch + item.sketch)
    if not merged:
        return 0
    existing: dict[tuple[str, str, int, int, str], MonitorSketchRow] = {}
    for row in s.scalars(sa.select(MonitorSketchRow).where(
            MonitorSketchRow.device_id.in_(sorted({k[0] for k in merged})),
            MonitorSketchRow.window.in_(sorted({k[3] for k in merged})))):
        key = (row.device_id, row.model, row.version, row.window, row.reference_sha256)
        if key in merged:
            existing.setdefault(key, row)
    for key, item in merged.items():
        held_row = existing.get(key)
        if held_row is not None:
            total = WindowSketch.from_dict(held_row.sketch, item.reference) + item.sketch
            held_row.sketch, held_row.n = total.to_dict(), total.n
            held_row.received_at, held_row.labels = item.received_at, dict(item.labels)
        else:
            s.add(MonitorSketchRow(device_id=item.device_id, model=item.model,
                                   version=item.version, reference_sha256=item.reference_sha256,
                                   window=item.window, received_at=item.received_at,
                                   n=item.sketch.n, labels=dict(item.labels),
                                   sketch=item.sketch.to_dict()))
    s.flush()
    return len(merged)


def record_sketch(s: Session, device: DeviceRow, report: DeviceReport, now: datetime, *,
                  window_s: float, keep: timedelta | None = None) -> bool:
    """Validate and store the report's sketch in ``s`` (False when it carries none): what the
    telemetry route does in two steps, :func:`check_sketch` and the group commit."""
    pending = check_sketch(s, device, report, now, window_s=window_s)
    if pending is None:
        return False
    if keep is not None:
        sweep_sketches(s, [device.id], now - keep)
    store_sketches(s, [pending])
    return True


def _micros(when: datetime) -> int:
    aware = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return int(aware.timestamp() * 1_000_000)


def sketches(s: Session, model: str, version: int, since: datetime,
             ref: MonitorReference) -> tuple[list[DeviceSketch], int]:
    """Stored window sketches of ``model@version`` updated since ``since`` made against ``ref``
    (those against an older reference are left out), and when the newest was received (µs
    since the epoch: an evaluation steps its alerts only when something new arrived)."""
    q = sa.select(MonitorSketchRow).where(
        MonitorSketchRow.model == model, MonitorSketchRow.version == version,
        MonitorSketchRow.received_at >= since,
        MonitorSketchRow.reference_sha256 == ref.digest()).order_by(MonitorSketchRow.id)
    items, last = [], 0
    for row in s.scalars(q):
        last = max(last, _micros(row.received_at))
        items.append(DeviceSketch(row.device_id, version, WindowSketch.from_dict(row.sketch, ref),
                                  labels={str(k): str(v) for k, v in row.labels.items()},
                                  window=row.window))
    return items, last


def monitored_versions(s: Session, since: datetime) -> list[tuple[str, int]]:
    q = sa.select(MonitorSketchRow.model, MonitorSketchRow.version).where(
        MonitorSketchRow.received_at >= since).distinct()
    return sorted((m, v) for m, v in s.execute(q))


def group_metrics(s: Session, model: str, version: int, devices: set[str] | None,
                  since: datetime) -> dict[str, float] | None:
    """The gate metrics (``report_metrics``) of the merged sketches ``devices`` (None: all)
    sent for ``model@version`` since ``since``; None without a reference or sketches."""
    ref = latest_reference(s, model, version)
    if ref is None:
        return None
    items, _ = sketches(s, model, version, since, ref)
    if devices is not None:
        items = [it for it in items if it.device_id in devices]
    if not items:
        return None
    return report_metrics(drift_report(model, version, items))


# --- evaluation --------------------------------------------------------------------------


@dataclass
class CohortResult:
    cohort: str
    report: dict[str, Any]
    metrics: dict[str, float]
    alarm: bool | None  # None: too few rows to judge
    alert: dict[str, Any] = field(default_factory=dict)
    event: str | None = None  # "raised" or "cleared" by this evaluation
    event_id: int | None = None  # the stored event's id (monitor_events)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def cohorts(items: Sequence[DeviceSketch]) -> dict[str, list[DeviceSketch]]:
    """Every device (``*``) and each value of each device label (``region=north``)."""
    out: dict[str, list[DeviceSketch]] = {ALL: list(items)}
    by_label: dict[str, dict[str, list[DeviceSketch]]] = defaultdict(lambda: defaultdict(list))
    for it in items:
        for k, v in it.labels.items():
            if k not in _IGNORED_LABELS:
                by_label[k][v].append(it)
    for label, values in sorted(by_label.items()):
        if len(values) <= MAX_COHORT_VALUES:
            for value, group in sorted(values.items()):
                out[cohort_key(label, value)] = group
    return out


def _alert_row(s: Session, model: str, version: int, cohort: str,
               now: datetime) -> MonitorAlertRow:
    row = s.scalars(sa.select(MonitorAlertRow).where(
        MonitorAlertRow.model == model, MonitorAlertRow.version == version,
        MonitorAlertRow.cohort == cohort)).first()
    if row is None:
        row = MonitorAlertRow(model=model, version=version, cohort=cohort, active=False, bad=0,
                              good=0, since=None, updated_at=now, last_sketch_id=0, detail={})
        s.add(row)
    return row


@dataclass
class Tested:
    """One evaluation's drift reports by cohort, computed outside the write transaction."""

    model: str
    version: int
    last: int  # when the newest sketch read was received (µs since the epoch)
    reports: dict[str, DriftReport]


def _evaluated_up_to(s: Session, model: str, version: int) -> dict[str, int]:
    q = sa.select(MonitorAlertRow.cohort, MonitorAlertRow.last_sketch_id).where(
        MonitorAlertRow.model == model, MonitorAlertRow.version == version)
    return {c: int(v) for c, v in s.execute(q)}


def cohort_reports(s: Session, model: str, version: int, now: datetime, *, window_s: float,
                 options: DriftOptions = DriftOptions(), force: bool = False) -> Tested | None:
    """The drift reports of ``model@version`` by cohort over the last ``window_s`` (reads
    only: run it in a read transaction, the statistics are the slow part). Cohorts with no
    sketch newer than their last evaluation are left out (unless ``force``)."""
    ref = latest_reference(s, model, version)
    if ref is None:
        return None
    items, last = sketches(s, model, version, now - timedelta(seconds=window_s), ref)
    done = {} if force else _evaluated_up_to(s, model, version)
    groups = cohorts(items)
    # the fleet-wide report also compares the segments of each cohort label (bias)
    segment_labels = sorted({c.partition("=")[0] for c in groups if c != ALL})
    reports = {}
    for cohort, group in groups.items():
        if done.get(cohort, 0) >= last:
            continue
        label, _, value = cohort.partition("=")
        reports[cohort] = drift_report(
            model, version, group, options=options,
            cohort={} if cohort == ALL else {label: value},
            window={"start": (now - timedelta(seconds=window_s)).timestamp(),
                    "end": now.timestamp()},
            segment_labels=segment_labels if cohort == ALL else ())
    return Tested(model, version, last, reports)


def record_evaluation(s: Session, tested: Tested, now: datetime, *, policy: AlertPolicy,
                      options: DriftOptions = DriftOptions(),
                      force: bool = False) -> list[CohortResult]:
    """Store the reports and step each cohort's alert (in the write transaction). A cohort
    evaluated meanwhile up to the same sketches (another server process) is not stepped
    twice: one window of data is one step of the hysteresis."""
    model, version, last = tested.model, tested.version, tested.last
    # the labelled cohorts that alarm in this evaluation: what explains a fleet-wide alarm
    alarming = sorted(c for c, r in tested.reports.items()
                      if c != ALL and r.alarm and r.n >= options.min_n)
    out = []
    for cohort, report in tested.reports.items():
        alert = _alert_row(s, model, version, cohort, now)
        if not force and alert.last_sketch_id >= last:
            continue
        metrics = report_metrics(report)
        alarm = None if report.n < options.min_n else bool(report.alarm)
        state = AlertState(active=alert.active, bad=alert.bad, good=alert.good,
                           since=alert.since.timestamp() if alert.since else None)
        state, event = step_alert(state, alarm, policy, at=now.timestamp())
        summary = {"drifted": list(report.drifted), "devices": report.devices, "n": report.n,
                   "metrics": metrics, "quality": sorted(report.quality)}
        if cohort == ALL:
            summary["cohorts"] = alarming
        alert.active, alert.bad, alert.good = state.active, state.bad, state.good
        alert.since = now if event == "raised" else (None if not state.active else alert.since)
        alert.updated_at, alert.last_sketch_id, alert.detail = now, last, summary
        s.add(MonitorEvaluationRow(model=model, version=version, cohort=cohort, at=now,
                                   alarm=alarm, metrics=metrics, report=report.to_dict()))
        event_id = None
        if event is not None:
            ev = MonitorEventRow(model=model, version=version, cohort=cohort, at=now,
                                 event=event, detail=summary)
            s.add(ev)
            s.flush()
            event_id = ev.id
        out.append(CohortResult(cohort, report.to_dict(), metrics, alarm,
                                alert=_alert_dict(alert), event=event, event_id=event_id))
    return out


def evaluate(s: Session, model: str, version: int, now: datetime, *, window_s: float,
             policy: AlertPolicy, options: DriftOptions = DriftOptions(),
             force: bool = False) -> list[CohortResult]:
    """:func:`cohort_reports` then :func:`record_evaluation` in one session."""
    tested = cohort_reports(s, model, version, now, window_s=window_s, options=options,
                          force=force)
    if tested is None:
        return []
    return record_evaluation(s, tested, now, policy=policy, options=options, force=force)


def _alert_dict(row: MonitorAlertRow) -> dict[str, Any]:
    return {"model": row.model, "version": row.version, "cohort": row.cohort,
            "active": row.active, "bad": row.bad, "good": row.good,
            "since": row.since.isoformat() if row.since else None,
            "updated_at": row.updated_at.isoformat(), "detail": row.detail}


# --- reads and upkeep --------------------------------------------------------------------


def alerts(s: Session, model: str | None = None, version: int | None = None,
           active_only: bool = False) -> list[dict[str, Any]]:
    q = sa.select(MonitorAlertRow).order_by(MonitorAlertRow.model, MonitorAlertRow.version,
                                            MonitorAlertRow.cohort)
    if model is not None:
        q = q.where(MonitorAlertRow.model == model)
    if version is not None:
        q = q.where(MonitorAlertRow.version == version)
    if active_only:
        q = q.where(MonitorAlertRow.active.is_(True))
    return [_alert_dict(r) for r in s.scalars(q)]


def evaluations(s: Session, model: str, version: int, since: datetime,
                cohorts_: Iterable[str] | None = None, limit: int = 2000) -> list[dict[str, Any]]:
    q = sa.select(MonitorEvaluationRow).where(
        MonitorEvaluationRow.model == model, MonitorEvaluationRow.version == version,
        MonitorEvaluationRow.at >= since).order_by(MonitorEvaluationRow.at).limit(limit)
    if cohorts_ is not None:
        q = q.where(MonitorEvaluationRow.cohort.in_(list(cohorts_)))
    return [{"cohort": r.cohort, "at": r.at.isoformat(), "alarm": r.alarm,
             "metrics": r.metrics, "report": r.report} for r in s.scalars(q)]


def events(s: Session, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    q = sa.select(MonitorEventRow).order_by(MonitorEventRow.id.desc()).limit(limit)
    if model is not None:
        q = q.where(MonitorEventRow.model == model)
    return [{"model": r.model, "version": r.version, "cohort": r.cohort,
             "at": r.at.isoformat(), "event": r.event, "detail": r.detail}
            for r in s.scalars(q)]


def sweep(s: Session, now: datetime, keep: timedelta) -> None:
    """Drop sketches and evaluations older than ``keep`` (bounded storage)."""
    s.execute(sa.delete(MonitorSketchRow).where(MonitorSketchRow.received_at < now - keep))
    s.execute(sa.delete(MonitorEvaluationRow).where(MonitorEvaluationRow.at < now - keep))
