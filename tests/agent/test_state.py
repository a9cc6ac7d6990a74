"""The pure core: decisions on the A/B state, and its JSON round trip."""

from __future__ import annotations

import dataclasses

import pytest

from edgeloop.agent import AgentState, SlotInfo, decide
from edgeloop.agent._state import boot, confirm, fall_back, switch_to
from edgeloop.errors import AgentError


def _info(version: int, sha: str | None = None) -> SlotInfo:
    return SlotInfo(model="m", version=version, sha256=sha or f"{version:064x}", length=10)


def _state(**kw) -> AgentState:
    return AgentState(**kw)


def _assign(assignment_for, version: int, rollback: bool = False):
    a = assignment_for(b"x", version, rollback=rollback)
    return dataclasses.replace(a, sha256=f"{version:064x}")


def test_fresh_state_installs_into_slot_a(assignment_for):
    d = decide(AgentState(), _assign(assignment_for, 1))
    assert (d.action, d.slot) == ("install", "a")


def test_running_the_assigned_version_is_a_no_op(assignment_for):
    s = _state(slots={"a": _info(1), "b": None}, active="a", known_good="a")
    assert decide(s, _assign(assignment_for, 1)).action == "none"


def test_new_version_goes_to_the_inactive_slot(assignment_for):
    s = _state(slots={"a": _info(1), "b": None}, active="a", known_good="a", highest={"m": 1})
    d = decide(s, _assign(assignment_for, 2))
    assert (d.action, d.slot) == ("install", "b")


def test_older_version_refused_unless_rollback(assignment_for):
    s = _state(slots={"a": _info(1), "b": _info(2)}, active="b", known_good="b", highest={"m": 2})
    assert decide(s, _assign(assignment_for, 1)).action == "refuse"
    d = decide(s, _assign(assignment_for, 1, rollback=True))
    assert (d.action, d.slot) == ("switch", "a")


def test_no_install_while_on_trial(assignment_for):
    s = _state(slots={"a": _info(1), "b": _info(2)}, active="b", known_good="a", trial=True)
    assert decide(s, _assign(assignment_for, 3)).action == "none"


def test_a_failed_bundle_is_not_retried(assignment_for):
    s = _state(failed={f"{2:064x}": "self-test"})
    d = decide(s, _assign(assignment_for, 2))
    assert d.action == "none" and "refused before" in d.reason


def test_switch_keeps_the_old_slot_known_good_until_confirmed():
    s = _state(slots={"a": _info(1), "b": _info(2)}, active="a", known_good="a")
    t = switch_to(s, "b")
    assert (t.active, t.known_good, t.trial, t.highest) == ("b", "a", True, {"m": 2})
    c = confirm(t)
    assert (c.active, c.known_good, c.trial) == ("b", "b", False)


def test_fall_back_returns_to_known_good_and_remembers_why():
    s = switch_to(_state(slots={"a": _info(1), "b": _info(2)}, active="a", known_good="a"), "b")
    r = fall_back(s, "errors")
    assert (r.active, r.trial) == ("a", False)
    assert r.failed == {f"{2:064x}": "errors"}


def test_boot_gives_a_trial_slot_one_restart():
    s = switch_to(_state(slots={"a": _info(1), "b": _info(2)}, active="a", known_good="a"), "b")
    once = boot(s)
    assert (once.active, once.trial, once.trial_boots) == ("b", True, 1)
    twice = boot(once)
    assert (twice.active, twice.trial) == ("a", False)


def test_switch_to_empty_slot_is_an_error():
    with pytest.raises(AgentError, match="empty slot"):
        switch_to(AgentState(), "b")


def test_json_round_trip():
    s = switch_to(_state(slots={"a": _info(1), "b": _info(2)}, active="a", known_good="a"), "b")
    assert AgentState.from_json(s.to_json()) == s


def test_corrupt_state_file_is_an_agent_error():
    with pytest.raises(AgentError, match="not valid"):
        AgentState.from_json("{not json")
