"""Stable cohort hashing and stage cuts; cohort filters."""

from __future__ import annotations

import math

import pytest

from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import RolloutError
from edgeloop.fleet._canary import cohort_matches, device_hash, in_stage, parse_cohort, stage_cut

IDS = [f"d-{i:04x}" for i in range(1000)]


def test_hash_is_stable_uniform_and_salted():
    assert device_hash("s", "d-1") == device_hash("s", "d-1")
    assert device_hash("s", "d-1") != device_hash("t", "d-1")
    hs = [device_hash("s", d) for d in IDS]
    assert all(0 <= h < 1 for h in hs)
    assert 0.4 < sum(hs) / len(hs) < 0.6


@pytest.mark.parametrize("n", [1, 7, 20, 1000])
def test_stages_take_ceil_percent_and_contain_each_other(n):
    hs = [device_hash("salt", d) for d in IDS[:n]]
    previous: set[str] = set()
    for pct in (1, 10, 50, 100):
        cut = stage_cut(hs, pct)
        chosen = {d for d in IDS[:n] if in_stage("salt", d, cut)}
        assert len(chosen) == (n if pct == 100 else max(1, math.ceil(pct / 100 * n)))
        assert previous <= chosen
        previous = chosen
    assert stage_cut([], 10) == 0.0 and stage_cut([], 100) == 1.0


def test_cohorts():
    arm = DeviceProfile(
        name="rpi4", source="builtin", arch="aarch64", cpu_model="A72", isa=("neon",)
    )
    assert parse_cohort("arch=aarch64, region=eu") == {"arch": "aarch64", "region": "eu"}
    assert cohort_matches({"arch": "aarch64", "hardware": "rpi4", "isa": "NEON"}, arm, {})
    assert not cohort_matches({"arch": "x86_64"}, arm, {})
    assert cohort_matches({"region": "eu"}, None, {"region": "eu"})
    assert not cohort_matches({"region": "eu"}, arm, {"region": "us"})
    assert cohort_matches({"tag": "beta"}, arm, {"tags": "alpha, beta"})
    assert not cohort_matches({"arch": "aarch64"}, None, {})
    with pytest.raises(RolloutError, match="KEY=VALUE"):
        parse_cohort("arch")
