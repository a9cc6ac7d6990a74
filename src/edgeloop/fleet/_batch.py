"""Group commit of the device writes: a check-in's nonce and the state it reports, a telemetry
report's nonce, its row and its monitoring sketch.

A check-in used to open its own write transaction (on SQLite: the file's one write lock) for
two rows. Here every request thread hands its writes to :class:`CheckinWriter` and waits; the
first waiting thread becomes the *leader* and commits everything queued so far in one
transaction, then the next batch, until the queue is empty (no background thread, no timer:
at low load a batch is one check-in and adds no delay; under load one transaction carries
hundreds).

Replay protection stays atomic, also across processes: the batch inserts its nonces with
``INSERT .. ON CONFLICT DO NOTHING RETURNING``, so the database's primary key (device, nonce)
decides, as before; a nonce already stored (by any process) or twice in one batch is refused,
and a refused check-in's state is not written. As before, about one nonce in 16 sweeps its
device's expired nonces, now in the batch's transaction.

Telemetry goes through the same queue (:class:`Telemetry`): the route validates everything
first (signature, report, sketch against its reference: a refusal stores nothing), then hands
the rows over; the batch inserts the reports in one statement, merges the sketches into their
window rows with one read of the rows they extend, and updates ``last_seen``. A request is
answered only once its batch committed, so a crash loses no report that was acknowledged
(202): what it loses is the batch in flight, whose devices got no answer and send again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from edgeloop.db import DeviceRow, NonceRow, write_session
from edgeloop.fleet._monitor_store import PendingSketch, store_sketches, sweep_sketches
from edgeloop.fleet._store import insert_reports, sweep_reports

__all__ = ["CheckinWriter", "Telemetry"]

_MAX_BATCH = 500  # rows per INSERT: 3 parameters each, well under SQLite's 32,766
_SWEEP = ("0", "a", "A", "-")  # the nonce endings that sweep (as ``_store.authenticate``)


@dataclass(frozen=True)
class Telemetry:
    """A validated telemetry report's writes: its ``fleet_reports`` row (``_store.report_row``),
    its sketch, and the retention sweeps this report runs (None: none)."""

    report: dict[str, Any]
    sketch: PendingSketch | None = None
    reports_before: datetime | None = None
    sketches_before: datetime | None = None


@dataclass
class _Op:
    device_id: str
    nonce: str
    seen_at: datetime
    state: dict[str, Any] | None
    telemetry: Telemetry | None = None
    done: threading.Event = field(default_factory=threading.Event)
    accepted: bool = False
    error: BaseException | None = None


class CheckinWriter:
    """``writer.submit(device_id, nonce, now, state, telemetry) -> bool``: True once the nonce
    is stored (new), ``state`` (DeviceRow columns) and ``telemetry``'s rows written, False
    when the nonce was seen before (then nothing of it is written)."""

    def __init__(self, engine: Engine, nonce_ttl: timedelta) -> None:
        self.engine = engine
        self.nonce_ttl = nonce_ttl
        self._lock = threading.Lock()
        self._queue: list[_Op] = []
        self._leading = False
        self.transactions = 0  # commits so far (the benchmark reads writes per check-in)
        self.rows = 0  # rows inserted or updated so far

    def submit(
        self,
        device_id: str,
        nonce: str,
        now: datetime,
        state: dict[str, Any] | None,
        telemetry: Telemetry | None = None,
    ) -> bool:
        op = _Op(device_id, nonce, now, state, telemetry)
        with self._lock:
            self._queue.append(op)
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead()
        op.done.wait()
        if op.error is not None:
            raise op.error
        return op.accepted

    def _lead(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
                if not batch:
                    self._leading = False
                    return
            try:
                self._commit(batch)
            except Exception:
                # one bad row (a device deleted meanwhile ...) must not fail the others
                for op in batch:
                    try:
                        self._commit([op])
                    except Exception as e:  # handed to that request's thread
                        op.error = e
            finally:
                for op in batch:
                    op.done.set()

    def _commit(self, batch: list[_Op]) -> None:
        with write_session(self.engine) as s:
            seen: set[tuple[str, str]] = set()
            fresh: list[_Op] = []
            for op in batch:
                op.accepted = False
                key = (op.device_id, op.nonce)
                if key not in seen:  # the same nonce twice in one batch: only the first
                    seen.add(key)
                    fresh.append(op)
            stored = _insert_nonces(s, fresh)
            updates: list[dict[str, Any]] = []
            for op in fresh:
                op.accepted = (op.device_id, op.nonce) in stored
                if op.accepted and op.state:
                    updates.append(
                        {"b_id": op.device_id, **{f"b_{k}": v for k, v in op.state.items()}}
                    )
            for group in _by_keys(updates):
                columns = tuple(sorted(k[2:] for k in group[0]))
                s.connection().execute(_update_statement(columns), group)
            reports = [op.telemetry for op in fresh if op.accepted and op.telemetry is not None]
            if reports:
                self.rows += _write_telemetry(s, reports)
            # as before batching: about one nonce in 16 sweeps its device's expired nonces
            sweep = {op.device_id for op in fresh if op.accepted and op.nonce.endswith(_SWEEP)}
            if sweep:
                s.execute(
                    sa.delete(NonceRow).where(
                        NonceRow.device_id.in_(sorted(sweep)),
                        NonceRow.seen_at < batch[0].seen_at - self.nonce_ttl,
                    )
                )
            self.rows += len(stored) + len(updates)
        self.transactions += 1


def _write_telemetry(s: Session, reports: list[Telemetry]) -> int:
    """The accepted reports' sweeps, rows and sketches; the rows written."""
    for t in reports:
        if t.reports_before is not None:
            sweep_reports(s, [t.report["device_id"]], t.reports_before)
        if t.sketches_before is not None:
            sweep_sketches(s, [t.report["device_id"]], t.sketches_before)
    insert_reports(s, [t.report for t in reports])
    sketches = [t.sketch for t in reports if t.sketch is not None]
    return len(reports) + store_sketches(s, sketches)


def _insert_nonces(s: Session, ops: list[_Op]) -> set[tuple[str, str]]:
    """Insert the batch's nonces; the (device, nonce) pairs that were new."""
    if not ops:
        return set()
    dialect = s.get_bind().dialect.name
    rows = [{"device_id": op.device_id, "nonce": op.nonce, "seen_at": op.seen_at} for op in ops]
    if dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        insert: Any = sqlite.insert if dialect == "sqlite" else postgresql.insert
        table: Any = NonceRow.__table__
        stmt = insert(table).on_conflict_do_nothing().returning(table.c.device_id, table.c.nonce)
        # one statement, compiled once: SQLAlchemy's "insertmanyvalues" sends the rows as one
        # multi-row INSERT .. RETURNING (or a few, for a large batch)
        return {(str(d), str(n)) for d, n in s.connection().execute(stmt, rows)}
    out: set[tuple[str, str]] = set()  # other databases: one savepoint per nonce
    for row in rows:
        try:
            with s.begin_nested():
                s.add(NonceRow(**row))
            out.add((str(row["device_id"]), str(row["nonce"])))
        except sa.exc.IntegrityError:
            pass
    return out


_UPDATES: dict[tuple[str, ...], Any] = {}


def _update_statement(columns: tuple[str, ...]) -> Any:
    """``UPDATE fleet_devices SET <columns> WHERE id = :b_id`` (built once per column set)."""
    stmt = _UPDATES.get(columns)
    if stmt is None:
        table: Any = DeviceRow.__table__
        stmt = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"))
            .values({c: sa.bindparam(f"b_{c}") for c in columns if c != "id"})
        )
        _UPDATES[columns] = stmt
    return stmt


def _by_keys(updates: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Bulk updates grouped by their columns (one executemany each), in submission order
    within a group, so a device's later check-in in the batch wins."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for u in updates:
        groups.setdefault(tuple(sorted(u)), []).append(u)
    return list(groups.values())
