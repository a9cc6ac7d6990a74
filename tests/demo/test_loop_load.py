"""The closed loop's fleet load scales with the fleet's size (edgeloop.demo._loop.LoopLoad)."""

from __future__ import annotations

import math

import pytest

from edgeloop.demo._loop import FLEET_RPS_BUDGET, LoopLoad, LoopState


def test_the_10_device_fleet_keeps_its_rates_and_waits() -> None:
    load = LoopLoad(10)  # the e2e test's fleet: as before the load was scaled
    assert (load.rps, load.poll_s, load.feedback_share) == (4.0, 1.0, 0.5)
    assert (load.serving_s, load.detect_s, load.labels, load.labels_s, load.realized_s) == (
        300.0, 300.0, 30, 120.0, 120.0)


@pytest.mark.parametrize("devices", [50, 100, 200, 1000])
def test_a_large_fleet_serves_the_budget_and_its_cohort_as_much_as_a_small_one(
        devices: int) -> None:
    load = LoopLoad(devices)
    assert devices * load.rps == pytest.approx(FLEET_RPS_BUDGET)
    cohort = len(LoopState(devices).north)
    assert cohort * load.rps == pytest.approx(LoopLoad(10).rps * 2)  # 8 inferences/s
    assert devices / load.poll_s <= 50.0  # polls a second, the whole fleet
    assert load.feedback_share == 1.0
    # labels: about 600 in all across the cohort, and time for them at the label rate
    assert cohort * load.labels >= 600 or load.labels == 30
    assert load.labels_s >= load.labels / (load.rps * load.feedback_share)
    assert load.detect_s >= 300.0 and load.serving_s >= 3.0 * devices
    # the first stage (a quarter of the cohort) alone needs 100 rows at its devices' rate
    assert load.rollout_s >= 8 * 100 / (math.ceil(cohort / 4) * load.rps)


def test_a_tiny_fleet_waits_longer_for_its_one_cohort_device() -> None:
    load = LoopLoad(3)
    assert load.rps == 4.0 and load.detect_s == 600.0  # 4 inferences/s for the cohort, not 8
