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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from edgeloop.agent._state import AgentState, other_slot

if TYPE_CHECKING:
    from edgeloop.update import TargetInfo

__all__ = ["RevocationPlan", "plan_revocation"]


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
