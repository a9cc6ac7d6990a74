"""The rollout state machine. Pure: a rollout's state and an observation in, a transition out.

::

                 pause          resume
     running ──────────► paused ──────► running (same stage, soak starts again)
       │ stage devices on the new version (or the switch timeout)
       ▼
     soaking ── soak over, every gate passes ──► running (next stage) ... ──► completed
       │
       └─ any gate fails (also while running or paused) ──► failed ──► rolled_back
                                                             (every device of the stage is back
                                                              on the previous version)
     abort (running, soaking, paused) ──► aborted       rollback (also completed) ──► failed

While ``failed``, ``rolled_back`` or ``aborted`` the director gives every device the previous
version again, with the signed ``rollback`` flag, so agents switch back to their known-good
slot without downloading. The database edge (``_rollout_store``) applies a transition with a
compare-and-set on the rollout's revision, so several server processes may drive one rollout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from edgeloop.errors import RolloutError
from edgeloop.fleet._gates import GateResult

__all__ = [
    "ACTIVE",
    "IN_EFFECT",
    "STATES",
    "TERMINAL",
    "Observation",
    "RolloutStatus",
    "Transition",
    "command",
    "step",
]

ACTIVE = ("running", "soaking", "paused")  # the new version goes to the stage's devices
IN_EFFECT = (*ACTIVE, "failed")  # the driver still watches it
TERMINAL = ("rolled_back", "aborted", "completed")
STATES = (*IN_EFFECT, *TERMINAL)


@dataclass(frozen=True)
class RolloutStatus:
    state: str
    stage: int  # index into stages
    stages: tuple[float, ...]
    soak_s: float
    stage_started_at: datetime
    soak_started_at: datetime | None = None
    state_since: datetime | None = None

    @property
    def last_stage(self) -> bool:
        return self.stage >= len(self.stages) - 1


@dataclass(frozen=True)
class Observation:
    now: datetime
    stage_devices: int  # devices chosen for the current stage
    on_new: int  # of those, how many report the new version installed
    still_new: int  # devices anywhere still reporting the new version (while failed)
    gates: Sequence[GateResult] = ()
    switch_timeout_s: float = 180.0  # the longest wait for devices to switch (or switch back)


@dataclass(frozen=True)
class Transition:
    kind: str  # soak, advance, complete, gate_failed, rolled_back, pause, resume, abort, rollback
    state: str
    stage: int
    reason: str
    new_stage: bool = False  # a new stage starts: cut the devices again
    soak_starts: bool = False
    gates: tuple[GateResult, ...] = field(default=())


def _elapsed(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else (now - since).total_seconds()


def step(r: RolloutStatus, obs: Observation) -> Transition | None:
    """What the driver does next on its own; None while nothing changes."""
    gates = tuple(obs.gates)
    if r.state in ACTIVE:
        failing = [g for g in gates if g.status == "fail"]
        if failing:
            g = failing[0]
            return Transition(
                "gate_failed",
                "failed",
                r.stage,
                f"gate {g.gate} failed at stage {r.stage + 1} ({r.stages[r.stage]:g}%): {g.reason}",
                gates=gates,
            )
    if r.state == "running":
        waited = _elapsed(obs.now, r.stage_started_at)
        if obs.stage_devices > 0 and obs.on_new >= obs.stage_devices:
            why = f"{obs.on_new}/{obs.stage_devices} devices of the stage on the new version"
        elif waited >= obs.switch_timeout_s:
            why = (
                f"{obs.on_new}/{obs.stage_devices} devices switched within "
                f"{obs.switch_timeout_s:g} s; soaking with those"
            )
        else:
            return None
        return Transition("soak", "soaking", r.stage, why, soak_starts=True, gates=gates)
    if r.state == "soaking":
        if _elapsed(obs.now, r.soak_started_at) < r.soak_s:
            return None
        if any(g.status != "pass" for g in gates):
            return None  # pending: not enough samples yet
        passed = "; ".join(f"{g.gate} ({_fmt(g.treatment)} vs {_fmt(g.control)})" for g in gates)
        summary = f"stage {r.stage + 1} ({r.stages[r.stage]:g}%) healthy" + (
            f": {passed}" if passed else ""
        )
        if r.last_stage:
            return Transition("complete", "completed", r.stage, summary, gates=gates)
        return Transition("advance", "running", r.stage + 1, summary, new_stage=True, gates=gates)
    if r.state == "failed":
        if obs.still_new == 0:
            return Transition(
                "rolled_back",
                "rolled_back",
                r.stage,
                "every device is back on the previous version",
            )
        if _elapsed(obs.now, r.state_since or r.stage_started_at) >= obs.switch_timeout_s:
            return Transition(
                "rolled_back",
                "rolled_back",
                r.stage,
                f"{obs.still_new} device(s) not heard from since; they switch back at check-in",
            )
    return None


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


_COMMANDS = {
    "pause": (("running", "soaking"), "paused"),
    "resume": (("paused",), "running"),
    "abort": (ACTIVE, "aborted"),
    "rollback": ((*ACTIVE, "completed"), "failed"),
}


def command(r: RolloutStatus, action: str, reason: str) -> Transition:
    """An admin's pause, resume, abort or rollback; RolloutError when the state forbids it."""
    if action not in _COMMANDS:
        raise RolloutError(f"action {action!r}: expected one of {', '.join(_COMMANDS)}")
    allowed, target = _COMMANDS[action]
    if r.state not in allowed:
        raise RolloutError(
            f"cannot {action} a rollout that is {r.state}; expected it to be {' or '.join(allowed)}"
        )
    return Transition(action, target, r.stage, reason or f"{action} by an admin")
