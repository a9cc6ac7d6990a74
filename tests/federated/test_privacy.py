"""Privacy for federated runs: the combinations table and the epsilon a run spends."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable

import pytest

pytest.importorskip("flwr")

from edgeloop.errors import InputError
from edgeloop.federated.server import (
    PrivacyPlan,
    combinations,
    noise_for_epsilon,
    rdp_epsilon,
)


def _exact_gaussian_delta(eps: float, mu: float) -> float:
    """delta(eps) of a Gaussian mechanism with mu = sensitivity / sigma (Balle & Wang 2018)."""
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))  # noqa: E731
    return phi(-eps / mu + mu / 2) - math.exp(eps) * phi(-eps / mu - mu / 2)


@pytest.mark.parametrize(("noise", "rounds"), [(1.0, 1), (1.1, 50), (4.0, 100), (20.0, 10)])
def test_epsilon_is_a_valid_and_tight_bound(noise: float, rounds: int) -> None:
    # R rounds of a Gaussian mechanism compose into one with mu = sqrt(R) / noise, whose exact
    # epsilon at delta the RDP bound must never undercut, and should not overshoot by much.
    delta = 1e-5
    spent = rdp_epsilon(noise, rounds, delta, use_flower=False)
    mu = math.sqrt(rounds) / noise
    assert _exact_gaussian_delta(spent.epsilon, mu) <= delta * 1.0001
    lo, hi = 0.0, spent.epsilon  # the exact epsilon, by bisection
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _exact_gaussian_delta(mid, mu) <= delta else (mid, hi)
    assert spent.epsilon <= 1.5 * hi + 0.05
    # and the standard conversion (Mironov 2017) is never tighter than the one used
    standard = rounds / (2 * noise**2) + math.sqrt(2 * rounds * math.log(1 / delta)) / noise
    assert spent.epsilon <= standard + 1e-9
    assert spent.method == "edgeloop-rdp" and spent.order is not None and spent.order > 1


def test_epsilon_grows_with_rounds_and_falls_with_noise() -> None:
    a, b, c = (rdp_epsilon(n, r, use_flower=False).epsilon for n, r in
               [(1.0, 10), (1.0, 40), (2.0, 40)])
    assert a < b and c < b


def test_flower_accountant_agrees_when_installed() -> None:
    pytest.importorskip("dp_accounting")
    ours = rdp_epsilon(1.2, 30, use_flower=False)
    theirs = rdp_epsilon(1.2, 30)
    assert theirs.method == "flwr-rdp"
    assert theirs.epsilon == pytest.approx(ours.epsilon, rel=0.02)


@pytest.mark.parametrize("target", [8.0, 1.0])
def test_noise_for_epsilon_inverts_the_accountant(target: float) -> None:
    noise = noise_for_epsilon(target, 20)
    assert rdp_epsilon(noise, 20, use_flower=False).epsilon <= target
    assert rdp_epsilon(noise * 0.99, 20, use_flower=False).epsilon > target


@pytest.mark.parametrize(("plan", "words"), [
    (PrivacyPlan(dp="client", noise=1, clip=1, secagg=True, strategy="krum"), "robust"),
    (PrivacyPlan(dp="server", noise=1, clip=1, secagg=True), "server-side clipping"),
    (PrivacyPlan(secagg=True, strategy="fedprox"), "legacy workflow"),
    (PrivacyPlan(dp="server", noise=1, clip=1, strategy="fedmedian"), "sensitivity"),
    (PrivacyPlan(dp="server", noise=0, clip=1), "noise multiplier"),
    (PrivacyPlan(dp="server", noise=1, clip=math.nan), "--dp-clip"),
    (PrivacyPlan(dp="sometimes"), "--dp"),
    (PrivacyPlan(noise=1.0), "need --dp"),
])
def test_unsupported_combinations_are_refused_in_one_line(plan: PrivacyPlan, words: str) -> None:
    with pytest.raises(InputError, match=words) as e:
        plan.check()
    assert "\n" not in str(e.value)


def test_supported_combinations_and_the_table() -> None:
    for plan in [PrivacyPlan(), PrivacyPlan(secagg=True),
                 PrivacyPlan(dp="client", noise=1, clip=1, secagg=True),
                 PrivacyPlan(dp="server", noise=1, clip=1, strategy="fedadam")]:
        plan.check()
    assert PrivacyPlan().spend(5) is None
    rows = combinations()
    assert len(rows) == 18
    ok = {(r["dp"], r["secagg"], r["strategy"]) for r in rows if r["supported"] == "yes"}
    assert ("client", "yes", "fedavg") in ok and ("server", "yes", "fedavg") not in ok
    assert not any(r["strategy"].startswith("robust") and r["secagg"] == "yes" for r in rows
                   if r["supported"] == "yes")


def test_bad_accounting_input() -> None:
    for args in [(math.inf, 3), (1.0, 0), (-1.0, 3)]:
        with pytest.raises(InputError):
            rdp_epsilon(*args)
    with pytest.raises(InputError, match="delta"):
        rdp_epsilon(1.0, 3, 1.5)
    with pytest.raises(InputError, match="not reachable"):
        noise_for_epsilon(0.01, 1_000_000)


def test_cli_privacy(cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = cli("fl", "privacy", "--rounds", "10", "--epsilon", "8", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["epsilon"] <= 8 and out["noise"] > 0 and out["rounds"] == 10
    r = cli("fl", "privacy", "--rounds", "10", "--dp-noise", "1", "--secagg")
    assert r.returncode != 0 and "server-side clipping" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("fl", "privacy", "--rounds", "10")
    assert r.returncode != 0 and "exactly one of" in r.stderr


def test_a_simulated_dp_run_records_its_epsilon() -> None:
    pytest.importorskip("onnx")
    from edgeloop.federated.server import SimulationPlan, simulate
    from fl_model import blobs, model_bytes

    x, y = blobs(600)
    result = simulate(model_bytes(), x, y, SimulationPlan(clients=4, rounds=2, dp_noise=2.0,
                                                          dp_clip=5.0))
    privacy = result.record()["privacy"]
    assert privacy["epsilon"] == pytest.approx(rdp_epsilon(2.0, 2).epsilon, abs=1e-3)
    assert privacy["delta"] == 1e-5 and privacy["noise_multiplier"] == 2.0
    robust = simulate(model_bytes(), x, y, SimulationPlan(clients=4, rounds=1, dp_noise=2.0,
                                                          dp_clip=5.0, strategy="fedmedian"))
    assert robust.privacy["epsilon"] is None and "sensitivity" in robust.privacy["epsilon_note"]
