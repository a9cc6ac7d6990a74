"""The pure core of revocation: the agent's state and the signed targets listing in, a plan out."""

from __future__ import annotations

from edgeloop.agent._revocation import plan_revocation
from edgeloop.agent._state import AgentState, SlotInfo
from edgeloop.update import TargetInfo


def _slot(version: int, variant: str = "fp32") -> SlotInfo:
    return SlotInfo("kws", version, f"{version:064x}", 10, variant, f"kws/{version}/x.elb")


def _listed(*entries: tuple[int, str]) -> dict[str, TargetInfo]:
    out = {}
    for version, variant in entries:
        path = f"kws/{version}/kws-{version}-{variant}.elb"
        out[path] = TargetInfo(path, f"{version:064x}", 10, {"name": "kws", "version": version})
    return out


def _state(a: SlotInfo | None, b: SlotInfo | None, active: str = "a") -> AgentState:
    return AgentState(slots={"a": a, "b": b}, active=active, known_good=active)


def test_a_listed_version_is_kept():
    plan = plan_revocation(_state(_slot(2), _slot(1)), _listed((2, "fp32"), (1, "fp32")))

    assert plan.action == "keep"


def test_revoked_with_the_other_slot_listed_switches_to_it():
    plan = plan_revocation(_state(_slot(2), _slot(1)), _listed((1, "fp32")))

    assert (plan.action, plan.slot) == ("switch", "b")
    assert "kws@2 was revoked" in plan.reason


def test_revoked_with_the_other_slot_revoked_too_fetches_newest_same_variant_first():
    state = _state(_slot(3, "int8"), _slot(2))
    listed = _listed((1, "fp32"), (4, "fp32"), (4, "int8"))

    plan = plan_revocation(state, listed)

    assert plan.action == "fetch"
    assert [t.path for t in plan.candidates] == [
        "kws/4/kws-4-int8.elb",
        "kws/4/kws-4-fp32.elb",
        "kws/1/kws-1-fp32.elb",
    ]


def test_nothing_listed_for_the_model_gives_no_candidates():
    other = {"vad/1/v.elb": TargetInfo("vad/1/v.elb", "f" * 64, 1, {"name": "vad", "version": 1})}

    plan = plan_revocation(_state(_slot(1), None), other)

    assert plan.action == "fetch" and plan.candidates == ()


def test_a_device_with_nothing_installed_keeps_nothing():
    assert plan_revocation(AgentState(), {}).action == "keep"
