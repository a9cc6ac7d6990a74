"""Alerts with hysteresis: raise after ``raise_after`` bad windows in a row, clear after
``clear_after`` good ones in a row; a window without enough data changes nothing. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from edgeloop.errors import MonitorError

__all__ = ["AlertPolicy", "AlertState", "step_alert"]

Event = Literal["raised", "cleared"]


@dataclass(frozen=True)
class AlertPolicy:
    raise_after: int = 2
    clear_after: int = 3

    def __post_init__(self) -> None:
        if self.raise_after < 1 or self.clear_after < 1:
            raise MonitorError(
                f"alert policy: raise_after and clear_after must be >= 1, got "
                f"{self.raise_after} and {self.clear_after}"
            )


@dataclass(frozen=True)
class AlertState:
    active: bool = False
    bad: int = 0  # bad windows in a row
    good: int = 0  # good windows in a row
    since: float | None = None  # when the alert was raised


def step_alert(
    state: AlertState,
    bad: bool | None,
    policy: AlertPolicy = AlertPolicy(),
    *,
    at: float | None = None,
) -> tuple[AlertState, Event | None]:
    """The state after one window (``bad`` None: not enough data) and what changed."""
    if bad is None:
        return state, None
    if bad:
        s = replace(state, bad=state.bad + 1, good=0)
        if not s.active and s.bad >= policy.raise_after:
            return replace(s, active=True, since=at), "raised"
        return s, None
    s = replace(state, bad=0, good=state.good + 1)
    if s.active and s.good >= policy.clear_after:
        return replace(s, active=False, since=None), "cleared"
    return s, None
