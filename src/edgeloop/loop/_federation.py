"""A heal's federated fine-tune on the cohort's agents: a Flower deployment over their SuperNodes.

::

    access = SuperLinkAccess(cert_pem, key_pem, ca_pem, state_dir)   # the fleet's TLS and CA
    run = federate_on_agents(access, db_url, base_onnx, plan, "site=north", key="job-7")

What ``edgeloop fl start`` does by hand, for one heal: a SuperLink (TLS with the fleet's
certificate, node authentication) takes the node keys of the cohort's enrolled, non-revoked
devices (:func:`enrolled_bindings`: the signed bindings the agents sent the fleet server); the
run is announced in the fleet database (:func:`announce_run`), so the cohort's agents polling
``/v1/federated/poll`` start their SuperNodes under their own join policy; the rounds and the
federated evaluation gate run on the devices' delayed labels (:func:`edgeloop.federated.server
.deploy`); the announcement is closed and the SuperLink stopped when the run ends.

Durable: everything lives under ``state_dir/KEY`` (one directory per heal job). The run's
directory keeps the progress, the checkpoint of the last aggregated round and, at the end, the
outcome; a later attempt of the same job (its worker died, the server restarted) stops what the
dead attempt may have left running (its SuperLink's process group, by the pid file), closes its
announcement, starts a SuperLink of its own and resumes the run from the checkpoint, or reads a
finished run's outcome back: one Flower run at a time, never a second fine-tune of one job.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeloop.errors import FleetError, InputError

__all__ = [
    "FEDERATIONS",
    "SuperLinkAccess",
    "announce_run",
    "cohort_labels",
    "enrolled_bindings",
    "federate_on_agents",
    "stop_federations",
]

FEDERATIONS = ("in-process", "deployment")

_live: dict[int, tuple[Any, str, str]] = {}  # id(link) -> (SuperLink, db_url, announced run)
_lock = threading.Lock()


@dataclass(frozen=True)
class SuperLinkAccess:
    """Where a heal's SuperLink runs: the fleet's TLS certificate and key (the agents pin the
    fleet's CA, ``ca_pem``), the directory of its state, the address it listens on (``port`` 0:
    a free one) and the ``HOST:PORT`` the agents are told (``advertise``; default host:port)."""

    cert_pem: Path
    key_pem: Path
    ca_pem: Path
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    advertise: str | None = None

    def __post_init__(self) -> None:
        for what, path in (("certificate", self.cert_pem), ("key", self.key_pem),
                           ("CA", self.ca_pem)):
            if not Path(path).is_file():
                raise InputError(f"SuperLink TLS {what} {str(path)!r}: expected a PEM file")
        if not 0 <= self.port <= 65535:
            raise InputError(f"SuperLink port {self.port}: expected 0..65535 (0: a free port)")
        adv = self.advertise
        if adv is not None and (adv.count(":") != 1 or not adv.rsplit(":", 1)[1].isdigit()):
            raise InputError(f"SuperLink advertise {adv!r:.80}: expected HOST:PORT")


def cohort_labels(cohort: str) -> dict[str, str]:
    """A job's cohort (``*``, ``label=value``, or several joined by ``,``) as the labels a
    device must carry."""
    if cohort in ("", "*"):
        return {}
    out: dict[str, str] = {}
    for item in cohort.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key or not value:
            raise InputError(f"cohort {cohort!r:.80}: expected LABEL=VALUE (or '*')")
        out[key] = value
    return out


def enrolled_bindings(db_url: str | None, cohort: Mapping[str, str],
                      bindings: Mapping[str, Mapping[str, Any]] | None = None,
                      ) -> tuple[list[tuple[Any, dict[str, Any], str]], int, int]:
    """(enrolled key, node key binding, device id) of each non-revoked device of the fleet
    database ``db_url`` whose labels match ``cohort``; and how many revoked and unknown devices
    were left out. ``bindings`` (device id -> binding): those, instead of the ones the devices
    sent the fleet server."""
    import sqlalchemy as sa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from edgeloop.db import DeviceRow, FederatedNodeRow, make_engine, read_session, upgrade

    found = {k: dict(v) for k, v in (bindings or {}).items()}
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with read_session(engine) as s:
            if bindings is None:
                found = {r.device_id: dict(r.binding) for r in s.scalars(
                    sa.select(FederatedNodeRow))}
            rows = [(r.id, dict(r.labels or {}), r.revoked, r.signing_key) for r in
                    s.scalars(sa.select(DeviceRow).where(DeviceRow.id.in_(list(found))))]
    finally:
        engine.dispose()
    out: list[tuple[Any, dict[str, Any], str]] = []
    revoked = 0
    for device_id, labels, is_revoked, signing_key in rows:
        if any(str(labels.get(k)) != v for k, v in cohort.items()):
            continue
        if is_revoked:
            revoked += 1
            continue
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(signing_key))
        out.append((public, found[device_id], device_id))
    return out, revoked, len(found) - len(rows)


def _close_runs(db_url: str | None, *, run_id: str | None = None, prefix: str | None = None) -> int:
    import sqlalchemy as sa

    from edgeloop.db import FederatedRunRow, make_engine, utcnow, write_session

    engine = make_engine(db_url)
    try:
        with write_session(engine) as s:
            q = sa.select(FederatedRunRow).where(FederatedRunRow.closed_at.is_(None))
            if run_id is not None:
                q = q.where(FederatedRunRow.id == run_id)
            if prefix is not None:
                q = q.where(FederatedRunRow.id.startswith(prefix, autoescape=True))
            rows = list(s.scalars(q))
            for row in rows:
                row.closed_at = utcnow()
            return len(rows)
    finally:
        engine.dispose()


@contextlib.contextmanager
def announce_run(db_url: str | None, superlink: str, cohort: Mapping[str, str], *,
                 run_id: str | None = None) -> Iterator[str]:
    """An open run in the fleet database while the block runs: the cohort's agents polling
    ``/v1/federated/poll`` are told to join ``superlink`` (``HOST:PORT``); closed when the
    block ends."""
    from edgeloop.db import FederatedRunRow, make_engine, utcnow, write_session

    run_id = run_id or secrets.token_hex(8)
    if not 1 <= len(run_id) <= 32:
        raise InputError(f"federated run id {run_id!r:.40}: expected 1..32 characters")
    engine = make_engine(db_url)
    try:
        with write_session(engine) as s:
            s.add(FederatedRunRow(id=run_id, superlink=superlink, cohort=dict(cohort),
                                  opened_at=utcnow()))
    finally:
        engine.dispose()
    try:
        yield run_id
    finally:
        _close_runs(db_url, run_id=run_id)


def stop_federations() -> None:
    """Stop this process's SuperLinks and close their announcements (a worker shutting down:
    the next attempt of its job resumes the run from its checkpoint)."""
    with _lock:
        live = list(_live.values())
        _live.clear()
    for link, db_url, run_id in live:
        try:
            link.close(timeout_s=5)  # the run's own thread may not start it again
        finally:
            with contextlib.suppress(Exception):
                _close_runs(db_url, run_id=run_id)


def _stop_leftover(pid_file: Path) -> str | None:
    """Stop the SuperLink a dead attempt left running (its pid file names it); what was done."""
    from edgeloop.federated.server import kill_group

    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    pid_file.unlink(missing_ok=True)
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmd = b""
    if b"flower-superlink" not in cmd:
        return None  # gone (or the pid is another process's now)
    kill_group(pid)
    return f"stopped the SuperLink (pid {pid}) an earlier attempt left running"


def federate_on_agents(access: SuperLinkAccess, db_url: str, base: bytes, plan: Any,
                       cohort: str, *, key: str,
                       say: Callable[[str], None] | None = None) -> Any:
    """The federated head fine-tune of ``base`` (ONNX bytes) on the SuperNodes of ``cohort``'s
    agents, as ``plan`` (a ``federated.server.DeployPlan``) says; the result as
    ``federated.server.deploy`` returns it. ``key`` names the run (one heal job): a later call
    with the same key resumes it (module docstring)."""
    from edgeloop.errors import AuthError, IntegrityError
    from edgeloop.federated.server import SuperLink, deploy

    if not key.replace("-", "").isalnum() or len(key) > 40:
        raise InputError(f"federation key {key!r:.60}: expected letters, digits and '-'")
    tell = say or (lambda text: None)
    home = Path(access.state_dir).resolve() / key
    home.mkdir(parents=True, exist_ok=True)
    pid_file = home / "superlink.pid"
    left = _stop_leftover(pid_file)
    if left is not None:
        tell(left)
    closed = _close_runs(db_url, prefix=f"{key}.")
    if closed:
        tell(f"closed {closed} announcement(s) of an earlier attempt")
    wanted = cohort_labels(cohort)
    devices, revoked, unknown = enrolled_bindings(db_url, wanted)
    if len(devices) < plan.min_nodes:
        raise FleetError(f"cohort {cohort!r}: {len(devices)} enrolled, non-revoked devices sent "
                         f"a node key binding ({revoked} revoked, {unknown} unknown); the "
                         f"deployment needs {plan.min_nodes}")
    attempt = sum(1 for p in home.glob("superlink-*") if p.is_dir()) + 1
    link = SuperLink(access.cert_pem, access.key_pem, access.ca_pem, home / f"superlink-{attempt}",
                     host=access.host, port=access.port)
    run_name = f"{key}.{attempt}"[:32]
    with link:
        pid = link.pid
        if pid is not None:
            pid_file.write_text(str(pid))
        registered = 0
        for public, binding, device_id in devices:
            try:
                link.register_device(public, binding, device_id, revoked=False)
                registered += 1
            except (AuthError, IntegrityError, FleetError):
                continue
        if registered < plan.min_nodes:
            raise FleetError(f"cohort {cohort!r}: the SuperLink took {registered} node keys; "
                             f"the deployment needs {plan.min_nodes}")
        address = access.advertise or f"{link.host}:{link.port}"
        tell(f"SuperLink on {link.url}: {registered} node keys of cohort {cohort}, "
             f"{revoked} revoked left out; run {run_name} announced")
        with _lock:
            _live[id(link)] = (link, db_url, run_name)
        try:
            with announce_run(db_url, address, wanted, run_id=run_name):
                run = deploy(link, base, plan, home / "runs", run_key=key,
                             on_round=lambda r: tell(f"round {r.round}: {r.answered}/"
                                                     f"{r.sampled} answered"
                                                     f"{', aggregated' if r.aggregated else ''}"))
        finally:
            with _lock:
                _live.pop(id(link), None)
    pid_file.unlink(missing_ok=True)
    run.extra |= {"node_keys_registered": registered, "revoked_left_out": revoked,
                  "attempt": attempt}
    return run
