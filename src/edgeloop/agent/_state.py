"""The agent's persistent state and the pure decisions taken on it.

Two slots, ``a`` and ``b``, each hold at most one installed bundle. ``state.json`` says which slot
is active, which one is known to be good, and whether the active one is still on trial (switched
to but not yet confirmed healthy). It is the only pointer: every switch is one atomic rewrite of
that small file (temp name, fsync, rename), so a crash leaves either the old or the new pointer,
never a mix. Slot contents are written before the pointer names them.

The functions here take a state and return a new one (or a decision); they do no I/O, so every
path of the install state machine can be tested without a server or a model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeloop.errors import AgentError, RollbackError
from edgeloop.protocol import Assignment

__all__ = [
    "SLOTS",
    "AgentState",
    "Decision",
    "SlotInfo",
    "boot",
    "confirm",
    "decide",
    "other_slot",
    "clean_exit",
    "record_failure",
    "fall_back",
    "switch_to",
]

SLOTS = ("a", "b")
SlotName = Literal["a", "b"]
STATE_VERSION = 1
MAX_TRIAL_BOOTS = 2  # a trial slot that was loaded this often without confirming is abandoned


@dataclass(frozen=True)
class SlotInfo:
    """What one slot holds: a verified bundle, kept encrypted as it was downloaded."""

    model: str
    version: int
    sha256: str  # of the bundle file
    length: int
    variant: str = ""
    target: str = ""  # the TUF target path it came from
    installed_at: str = ""


@dataclass(frozen=True)
class AgentState:
    slots: dict[str, SlotInfo | None] = field(default_factory=lambda: dict.fromkeys(SLOTS))
    active: str | None = None
    known_good: str | None = None  # where a failure returns to; == active once confirmed
    trial: bool = False  # the active slot switched to and not yet confirmed
    trial_boots: int = 0  # times a trial slot was loaded at start-up without a confirmation
    highest: dict[str, int] = field(default_factory=dict)  # model -> highest version installed
    failed: dict[str, str] = field(default_factory=dict)  # bundle sha256 -> why it was refused
    installing: dict[str, Any] | None = None  # the install in progress (for diagnostics)

    def slot(self, name: str | None) -> SlotInfo | None:
        return None if name is None else self.slots.get(name)

    @property
    def current(self) -> SlotInfo | None:
        return self.slot(self.active)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["schema_version"] = STATE_VERSION
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> AgentState:
        try:
            data = json.loads(text)
            slots = {
                s: (SlotInfo(**data["slots"][s]) if data["slots"].get(s) else None) for s in SLOTS
            }
            return cls(
                slots=slots,
                active=data.get("active"),
                known_good=data.get("known_good"),
                trial=bool(data.get("trial", False)),
                trial_boots=int(data.get("trial_boots", 0)),
                highest={str(k): int(v) for k, v in data.get("highest", {}).items()},
                failed={str(k): str(v) for k, v in data.get("failed", {}).items()},
                installing=data.get("installing"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise AgentError(f"agent state file is not valid ({e!r}); expected state.json") from e


def other_slot(name: str | None) -> str:
    return "b" if name == "a" else "a"


@dataclass(frozen=True)
class Decision:
    """What to do about an assignment: nothing, install into a slot, or switch to a slot."""

    action: Literal["none", "install", "switch", "refuse"]
    slot: str | None = None
    reason: str = ""


def _holds(info: SlotInfo | None, a: Assignment) -> bool:
    if info is None or info.model != a.model or info.version != a.version:
        return False
    return not a.sha256 or info.sha256 == a.sha256


def decide(state: AgentState, a: Assignment) -> Decision:
    """The pure core of an update: compare the assignment with what the slots hold."""
    if _holds(state.current, a):
        return Decision("none", state.active, "already running the assigned version")
    if a.sha256 and a.sha256 in state.failed:
        return Decision(
            "none", None, f"bundle {a.sha256[:12]} refused before: {state.failed[a.sha256]}"
        )
    highest = state.highest.get(a.model, 0)
    if a.version < highest and not a.rollback:
        return Decision(
            "refuse",
            None,
            str(
                RollbackError(
                    f"assignment {a.model}@{a.version} is older than installed version "
                    f"{highest} and is not a signed rollback"
                )
            ),
        )
    other = other_slot(state.active)
    if state.active is not None and _holds(state.slot(other), a):
        return Decision("switch", other, f"slot {other} already holds {a.model}@{a.version}")
    if state.trial:
        # the other slot holds the known-good model: never overwrite it during a trial
        return Decision("none", None, f"slot {state.active} is on trial; install after it ends")
    return Decision("install", other if state.active is not None else "a", "new version")


def switch_to(state: AgentState, slot: str, *, trial: bool = True) -> AgentState:
    """Point the agent at ``slot``; the slot it leaves stays the known-good one during a trial."""
    info = state.slot(slot)
    if info is None:
        raise AgentError(f"cannot switch to empty slot {slot!r}")
    highest = dict(state.highest)
    highest[info.model] = max(highest.get(info.model, 0), info.version)
    known_good = state.known_good if state.known_good is not None else state.active
    if not trial or known_good is None or known_good == slot:
        return dataclasses.replace(
            state,
            active=slot,
            known_good=slot,
            trial=False,
            trial_boots=0,
            highest=highest,
            installing=None,
        )
    return dataclasses.replace(
        state,
        active=slot,
        known_good=known_good,
        trial=True,
        trial_boots=0,
        highest=highest,
        installing=None,
    )


def confirm(state: AgentState) -> AgentState:
    """The active slot proved healthy: it becomes the known-good one."""
    if not state.trial:
        return state
    return dataclasses.replace(state, known_good=state.active, trial=False, trial_boots=0)


def record_failure(state: AgentState, sha256: str, reason: str) -> AgentState:
    failed = dict(state.failed)
    failed[sha256] = reason[:300]
    # keep the list short: the oldest refusals go first
    while len(failed) > 32:
        failed.pop(next(iter(failed)))
    return dataclasses.replace(state, failed=failed, installing=None)


def fall_back(state: AgentState, reason: str) -> AgentState:
    """Fall back to the known-good slot, remembering why the abandoned bundle failed.

    The agent's own return (a failed trial); a fleet rollback is the server's decision and
    reaches the agent as a signed assignment with ``rollback: true``.
    """
    bad = state.current
    if state.known_good is None or state.known_good == state.active:
        # nothing to return to: keep the slot we have (it is the only model there is)
        return dataclasses.replace(state, trial=False, trial_boots=0)
    out = state if bad is None else record_failure(state, bad.sha256, reason)
    return dataclasses.replace(
        out, active=state.known_good, trial=False, trial_boots=0, installing=None
    )


def boot(state: AgentState) -> AgentState:
    """At start-up: count a trial slot's load; after too many unconfirmed ones, give it up."""
    state = dataclasses.replace(state, installing=None)
    if not state.trial:
        return state
    if state.trial_boots + 1 >= MAX_TRIAL_BOOTS:
        return fall_back(state, "did not confirm after a restart (crash while on trial)")
    return dataclasses.replace(state, trial_boots=state.trial_boots + 1)


def clean_exit(state: AgentState) -> AgentState:
    """At a clean shutdown: the start :func:`boot` counted for a trial slot was not a crash."""
    if not state.trial or state.trial_boots == 0:
        return state
    return dataclasses.replace(state, trial_boots=state.trial_boots - 1)
