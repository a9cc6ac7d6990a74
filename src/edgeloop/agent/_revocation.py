"""Revocation: a device runs only versions the release side's signed targets still list.

The release side (offline targets key, ``edgeloop release --revoke NAME@VERSION``) decides
which versions may run at all; the director only chooses among them. Pure core: the agent's
state and the verified targets listing in, a plan out (the agent does the I/O).

A device whose running version is no longer listed:

1. switches to its other slot if that version is still listed (no download);
2. else fetches the newest listed version of its model it can (through TUF, as any install);
3. else stops serving, with a clear local error that its next check-in reports.

This is the one case where security outranks "never without a model" (docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

import httpx

from edgeloop.agent._state import AgentState, SlotInfo, confirm, other_slot, record_failure
from edgeloop.errors import EdgeloopError
from edgeloop.protocol import Assignment, iso_time

if TYPE_CHECKING:
    from edgeloop.agent._agent import Agent
    from edgeloop.update import TargetInfo

__all__ = ["RevocationPlan", "enforce_revocation", "plan_revocation"]


@dataclass(frozen=True)
class RevocationPlan:
    action: Literal["keep", "switch", "fetch"]
    reason: str = ""
    slot: str | None = None  # for "switch"
    candidates: tuple[TargetInfo, ...] = ()  # for "fetch": newest first


def plan_revocation(state: AgentState, listed: Mapping[str, TargetInfo]) -> RevocationPlan:
    """What to do about the running version given the targets the release side lists."""
    current = state.current
    shas = {t.sha256 for t in listed.values()}
    if current is None or current.sha256 in shas:
        return RevocationPlan("keep")
    reason = (
        f"{current.model}@{current.version} was revoked: the signed targets metadata no "
        "longer lists it"
    )
    other = other_slot(state.active)
    held = state.slot(other)
    if held is not None and held.sha256 in shas:
        return RevocationPlan("switch", reason, slot=other)
    candidates = sorted(
        (
            t
            for t in listed.values()
            if t.custom.get("name") == current.model
            and "delta" not in t.custom  # a delta target is not a bundle to install
            and isinstance(t.custom.get("version"), int)
            and not isinstance(t.custom.get("version"), bool)
        ),
        # newest first; of one version, the same variant as the revoked one first
        key=lambda t: (
            -int(t.custom["version"]),
            not t.path.endswith(f"-{current.variant}.elb"),
            t.path,
        ),
    )
    return RevocationPlan("fetch", reason, candidates=tuple(candidates))


async def enforce_revocation(agent: Agent) -> None:
    """The agent's side of the plan: refresh the listing, then switch, fetch or stop serving."""
    if agent.state.current is None or agent.server_url is None:
        return
    listed = await asyncio.to_thread(agent.listed)
    plan = plan_revocation(agent.state, listed)
    if plan.action == "keep":
        return
    agent.telemetry.count("revocations")
    with agent._lock:
        revoked = agent.state.current
        assert revoked is not None
        agent._commit(record_failure(agent.state, revoked.sha256, plan.reason))
    if plan.action == "switch" and plan.slot is not None and agent.switch(plan.slot):
        with agent._lock:
            agent._commit(confirm(agent.state))  # the revoked slot is no longer known-good
        agent.last_error = f"{plan.reason}; switched to slot {plan.slot}"
        return
    for target in plan.candidates:
        if await _install_listed(agent, target, revoked):
            agent.last_error = f"{plan.reason}; installed {target.path}"
            return
    with agent._lock:  # nothing listed to run: stop serving (security over availability)
        agent._set_model(None)
        agent.degraded = True
        agent.last_error = f"{plan.reason}; no listed version to run: not serving"


async def _install_listed(agent: Agent, target: TargetInfo, revoked: SlotInfo) -> bool:
    now = datetime.now(timezone.utc)
    local = Assignment(  # the device's own decision, from verified targets metadata
        device_id=str(agent.device_id),
        model=revoked.model,
        version=int(target.custom["version"]),
        variant=target.path.rsplit("-", 1)[-1].removesuffix(".elb"),
        target=target.path,
        sha256=target.sha256,
        length=target.length,
        issued_at=iso_time(now),
        expires_at=iso_time(now + timedelta(minutes=5)),
        rollback=True,
        reason="revocation: newest listed version",
    )
    try:
        return await agent.apply(local)
    except (EdgeloopError, OSError, httpx.HTTPError) as e:  # keep trying the next one
        agent.telemetry.count("install_failures")
        agent.last_error = f"revocation fallback {target.path} failed: {e}"
        return False
