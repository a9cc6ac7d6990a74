"""The pure rollout state machine: every automatic transition and every admin command."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edgeloop.errors import RolloutError
from edgeloop.fleet._gates import GateResult
from edgeloop.fleet._machine import Observation, RolloutStatus, command, step

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _r(state="running", stage=0, soak_at=None, since=None):
    return RolloutStatus(state, stage, (10.0, 50.0, 100.0), 60.0, T0, soak_at, since or T0)


def _g(status):
    return GateResult("error_rate<0.01", status, 0.001, 0.001, 0.01, 5, 50, reason=status)


def _obs(t, stage=5, on_new=5, still_new=0, gates=()):
    return Observation(T0 + timedelta(seconds=t), stage, on_new, still_new, gates, 120.0)


def test_running_waits_for_the_stage_then_soaks():
    assert step(_r(), _obs(5, on_new=3)) is None
    t = step(_r(), _obs(5))
    assert (t.kind, t.state, t.soak_starts) == ("soak", "soaking", True)
    t = step(_r(), _obs(121, on_new=3))  # offline devices do not block forever
    assert t.state == "soaking" and "3/5" in t.reason


def test_soak_then_advance_or_complete_only_when_every_gate_passes():
    r = _r("soaking", soak_at=T0)
    assert step(r, _obs(30, gates=[_g("pass")])) is None  # soak not over
    assert step(r, _obs(61, gates=[_g("pending")])) is None  # not enough samples
    t = step(r, _obs(61, gates=[_g("pass")]))
    assert (t.kind, t.state, t.stage, t.new_stage) == ("advance", "running", 1, True)
    t = step(_r("soaking", stage=2, soak_at=T0), _obs(61, gates=[_g("pass")]))
    assert (t.kind, t.state) == ("complete", "completed")


@pytest.mark.parametrize("state", ["running", "soaking", "paused"])
def test_a_failing_gate_fails_the_rollout_in_any_active_state(state):
    t = step(_r(state, soak_at=T0), _obs(1, gates=[_g("pass"), _g("fail")]))
    assert (t.kind, t.state) == ("gate_failed", "failed") and "error_rate<0.01" in t.reason


def test_failed_becomes_rolled_back_when_devices_are_back_or_after_the_timeout():
    r = _r("failed", since=T0)
    assert step(r, _obs(5, still_new=2)) is None
    assert step(r, _obs(5, still_new=0)).state == "rolled_back"
    assert step(r, _obs(121, still_new=2)).state == "rolled_back"


def test_paused_does_not_advance():
    assert step(_r("paused", soak_at=T0), _obs(1000, gates=[_g("pass")])) is None


@pytest.mark.parametrize(
    ("state", "action", "to"),
    [
        ("running", "pause", "paused"),
        ("soaking", "pause", "paused"),
        ("paused", "resume", "running"),
        ("soaking", "abort", "aborted"),
        ("paused", "rollback", "failed"),
        ("completed", "rollback", "failed"),
    ],
)
def test_commands(state, action, to):
    assert command(_r(state), action, "why").state == to


@pytest.mark.parametrize(
    ("state", "action"),
    [
        ("paused", "pause"),
        ("running", "resume"),
        ("completed", "abort"),
        ("rolled_back", "rollback"),
        ("running", "explode"),
    ],
)
def test_commands_refused(state, action):
    with pytest.raises(RolloutError):
        command(_r(state), action, "why")


def test_terminal_states_stay():
    for state in ("completed", "rolled_back", "aborted"):
        assert step(_r(state), _obs(10_000, gates=[_g("fail")])) is None
