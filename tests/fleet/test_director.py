"""The director is pure: device and fleet values in, an assignment out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from edgeloop.artifacts import DeviceProfile
from edgeloop.fleet import DeviceState, FleetState, direct, select_variant, variant_fits
from edgeloop.protocol import InstalledModel, Release, Variant

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)
VNNI = DeviceProfile("xeon", "measured", "x86_64", "Xeon", isa=("avx2", "AVX512_VNNI"))
ARM = DeviceProfile("pi", "measured", "aarch64", "A72", isa=("neon",), memory_total_mb=512.0)


def _variants() -> tuple[Variant, ...]:
    return (
        Variant("fp32", "kws/2/fp32.elb", "a" * 64, 10),
        Variant("int8", "kws/2/int8.elb", "b" * 64, 5, {"isa": ["avx512_vnni"]}),
        Variant(
            "int8-arm", "kws/2/int8-arm.elb", "c" * 64, 5, {"arch": ["aarch64"], "isa": ["neon"]}
        ),
    )


def _fleet(desired: int = 2) -> FleetState:
    releases = [Release("kws", v, _variants()) for v in (1, 2)]
    return FleetState(releases={"kws": releases}, desired={"kws": desired})


def test_each_device_gets_the_most_specific_variant_it_satisfies() -> None:
    assert select_variant(VNNI, _variants()).variant == "int8"  # type: ignore[union-attr]
    assert select_variant(ARM, _variants()).variant == "int8-arm"  # type: ignore[union-attr]
    x86_plain = DeviceProfile("old", "measured", "x86_64", "Atom", isa=("sse4_2",))
    assert select_variant(x86_plain, _variants()).variant == "fp32"  # type: ignore[union-attr]
    assert select_variant(None, _variants()).variant == "fp32"  # type: ignore[union-attr]


def test_requirements_on_memory_and_providers_are_checked() -> None:
    assert not variant_fits({"min_memory_mb": 1024}, ARM)
    assert variant_fits({"min_memory_mb": 256}, ARM)
    assert not variant_fits({"providers": ["CUDAExecutionProvider"]}, ARM)
    assert select_variant(ARM, (Variant("big", "t", "d" * 64, 1, {"min_memory_mb": 4096}),)) is None


def test_direct_signs_nothing_but_names_the_desired_version_with_expiry() -> None:
    got = direct(DeviceState("d-1", profile=VNNI), _fleet(), now=NOW, ttl=timedelta(hours=2))
    assert got is not None
    assert (got.device_id, got.model, got.version, got.variant) == ("d-1", "kws", 2, "int8")
    assert (got.target, got.sha256, got.length) == ("kws/2/int8.elb", "b" * 64, 5)
    assert (got.issued_at, got.expires_at) == ("2026-11-24T18:00:00Z", "2026-11-24T20:00:00Z")
    assert got.rollback is False
    assert got.reason == "alias production -> 2"


def test_an_older_desired_version_is_flagged_as_a_rollback() -> None:
    device = DeviceState("d-1", profile=VNNI, installed=InstalledModel("kws", 2, "int8"))
    got = direct(device, _fleet(desired=1), now=NOW)
    assert got is not None and got.version == 1 and got.rollback is True
    same = direct(device, _fleet(desired=2), now=NOW)
    assert same is not None and same.rollback is False


def test_no_assignment_without_a_published_desired_version_or_a_model() -> None:
    device = DeviceState("d-1", profile=VNNI)
    assert direct(device, _fleet(desired=3), now=NOW) is None  # alias on an unpublished version
    two = FleetState(releases={}, desired={"kws": 1, "vad": 1})
    assert direct(device, two, now=NOW) is None  # several models and the device names none
    assert direct(DeviceState("d-1", model="vad"), _fleet(), now=NOW) is None


def test_a_policy_hook_can_give_some_devices_another_release() -> None:
    def canary(device: DeviceState, model: str, fleet: FleetState) -> tuple[Release, str] | None:
        if device.labels.get("ring") == "canary":
            release = fleet.release(model, 2)
            return (release, "rollout r-1 stage 1") if release else None
        release = fleet.release(model, 1)
        return (release, "control") if release else None

    fleet = _fleet(desired=1)
    canary_dev = DeviceState("d-1", profile=ARM, labels={"ring": "canary"})
    control_dev = DeviceState("d-2", profile=ARM)
    a = direct(canary_dev, fleet, now=NOW, policy=canary)
    b = direct(control_dev, fleet, now=NOW, policy=canary)
    assert a is not None and (a.version, a.reason) == (2, "rollout r-1 stage 1")
    assert b is not None and (b.version, b.reason) == (1, "control")


def _delta_fleet(delta_length: int) -> FleetState:
    from edgeloop.fleet._director import DeltaOffer

    releases = [Release("kws", v, (Variant("fp32", f"kws/{v}/fp32.elb", str(v) * 64, 1000),))
                for v in (1, 2)]  # fmt: skip
    offer = DeltaOffer("kws/2/fp32.from-1.eld", "e" * 64, delta_length)
    return FleetState(
        releases={"kws": releases}, desired={"kws": 2}, deltas={("1" * 64, "2" * 64): offer}
    )


def test_the_director_assigns_a_listed_delta_from_the_bundle_a_device_runs() -> None:
    on_v1 = DeviceState("d-1", installed=InstalledModel("kws", 1, "fp32", "1" * 64))
    got = direct(on_v1, _delta_fleet(40), now=NOW)
    assert got is not None and got.version == 2
    assert got.delta == {"target": "kws/2/fp32.from-1.eld", "sha256": "e" * 64, "length": 40}
    assert got.to_dict()["delta"]["length"] == 40
    # a delta not smaller than the bundle, another base, or nothing installed: the full bundle
    assert direct(on_v1, _delta_fleet(1000), now=NOW).delta is None  # type: ignore[union-attr]
    other = DeviceState("d-2", installed=InstalledModel("kws", 1, "fp32", "9" * 64))
    assert direct(other, _delta_fleet(40), now=NOW).delta is None  # type: ignore[union-attr]
    fresh = direct(DeviceState("d-3", model="kws"), _delta_fleet(40), now=NOW)
    assert fresh is not None and fresh.delta is None
    assert "delta" not in fresh.to_dict()  # assignments without one are as before


def test_an_assignment_with_a_malformed_delta_is_refused() -> None:
    import pytest

    from edgeloop.protocol import Assignment

    good = direct(
        DeviceState("d-1", installed=InstalledModel("kws", 1, "fp32", "1" * 64)),
        _delta_fleet(40),
        now=NOW,
    )
    assert good is not None
    data = good.to_dict()
    for bad in ({"target": "", "sha256": "e" * 64, "length": 1}, {"target": "t", "sha256": "x",
                "length": 1}, {"target": "t", "sha256": "e" * 64, "length": -1}, "t"):  # fmt: skip
        with pytest.raises(Exception, match="delta"):
            Assignment.from_dict({**data, "delta": bad})
