"""Privacy for federated runs: which combinations of differential privacy, SecAgg+ and
strategy exist, and the epsilon a run spends.

Differential privacy here is Flower's fixed-clipping DP at the client level: every update is
clipped to L2 norm ``clip`` (on the server, or on the device with Flower's
``fixedclipping_mod``) and the server adds Gaussian noise of standard deviation
``noise * clip / n`` to the mean of the ``n`` sampled updates. One round is then a Gaussian
mechanism with noise multiplier ``noise`` for the add-or-remove-one-device relation, and a run
of ``R`` rounds composes ``R`` of them.

The epsilon (at ``delta``) comes from Flower's RDP accountant when its ``dp`` extra
(``dp-accounting``) is installed, with the only sampling model Flower accounts for fixed
clipping (no amplification by sampling). Without it, :func:`rdp_epsilon` computes the same
bound itself, since the Gaussian mechanism's Renyi DP has a closed form (Mironov 2017,
Prop. 7): ``eps_RDP(alpha) = R * alpha / (2 * noise**2)``, converted to (epsilon, delta)-DP
with Canonne, Kamath and Steinke 2020 (Prop. 12, the conversion dp-accounting uses)::

    epsilon = min over alpha > 1 of
        eps_RDP(alpha) + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)

minimised over a dense grid of orders (every order gives a valid bound; the grid only decides
how tight). Sampling a fraction of the devices per round would amplify privacy under Poisson
sampling, but Flower samples a fixed number without replacement, so no amplification is
claimed: the reported epsilon is an upper bound.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edgeloop.errors import InputError

__all__ = [
    "DP_MODES",
    "PrivacyPlan",
    "PrivacySpend",
    "combinations",
    "noise_for_epsilon",
    "privacy_spend",
    "rdp_epsilon",
]

DP_MODES = ("none", "server", "client")
# Strategies whose aggregate is (post-processing of) the mean: the Gaussian noise is calibrated
# to the mean's sensitivity, and SecAgg+'s masked sum is all they need.
MEAN_STRATEGIES = ("fedavg", "fedprox", "fedadam")
ROBUST_STRATEGIES = ("fedmedian", "fedtrimmedavg", "krum")
_ORDERS = tuple([1 + i / 100 for i in range(1, 100)] + [2 + i / 10 for i in range(0, 280)]
                + list(range(30, 257)) + [320, 512, 1024, 4096])


@dataclass(frozen=True)
class PrivacySpend:
    """The privacy a run spent: ``(epsilon, delta)``-DP at the device level over ``rounds``."""

    epsilon: float
    delta: float
    rounds: int
    noise: float
    order: float | None
    method: str  # "flwr-rdp" (Flower's accountant, dp-accounting) or "edgeloop-rdp"

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _check_accounting(noise: float, rounds: int, delta: float) -> None:
    if not (math.isfinite(noise) and 0 < noise <= 1000):
        raise InputError(f"DP noise multiplier {noise!r}: expected 0 < noise <= 1000")
    if not (isinstance(rounds, int) and 1 <= rounds <= 1_000_000):
        raise InputError(f"rounds {rounds!r}: expected an integer 1..1000000")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise InputError(f"DP delta {delta!r}: expected 0 < delta < 1")


def _own_epsilon(noise: float, rounds: int, delta: float) -> tuple[float, float]:
    best, best_order = math.inf, _ORDERS[0]
    log_delta = math.log(delta)
    for a in _ORDERS:
        rdp = rounds * a / (2 * noise * noise)
        eps = rdp + math.log1p(-1 / a) - (log_delta + math.log(a)) / (a - 1)
        if eps < best:
            best, best_order = eps, a
    return max(best, 0.0), float(best_order)


def _flower_epsilon(noise: float, rounds: int, delta: float) -> tuple[float, float | None] | None:
    """Flower's RDP accountant, or None when its ``dp`` extra is not installed."""
    try:
        import dp_accounting  # noqa: F401  # the backend Flower's accountant wraps
    except ImportError:
        return None
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        SamplingMethod,
    )
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    acc = RdpAccountant(PrivacyConfig(
        target_delta=delta, population_size=1,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
        sampling_method=SamplingMethod.NO_AMPLIFICATION))
    acc.compose(GaussianPrivacyEvent(noise_multiplier=noise, sample_size=1, population_size=1),
                count=rounds)
    spent = acc.get_privacy_spent(delta)
    return float(spent.epsilon), spent.optimal_order


def rdp_epsilon(noise: float, rounds: int, delta: float = 1e-5, *,
                use_flower: bool = True) -> PrivacySpend:
    """The epsilon at ``delta`` that ``rounds`` rounds of fixed-clipping DP with noise
    multiplier ``noise`` spend (module docstring: formula, and why no sampling amplification).
    Flower's accountant when installed (and ``use_flower``), else the closed form."""
    _check_accounting(noise, rounds, delta)
    found = _flower_epsilon(noise, rounds, delta) if use_flower else None
    if found is not None:
        return PrivacySpend(found[0], delta, rounds, noise, found[1], "flwr-rdp")
    eps, order = _own_epsilon(noise, rounds, delta)
    return PrivacySpend(eps, delta, rounds, noise, order, "edgeloop-rdp")


def noise_for_epsilon(epsilon: float, rounds: int, delta: float = 1e-5) -> float:
    """The smallest noise multiplier (to 0.1 %) whose ``rounds`` rounds spend at most
    ``epsilon`` at ``delta``: how a run is configured from a privacy budget."""
    if not (math.isfinite(epsilon) and 0.01 <= epsilon <= 1000):
        raise InputError(f"DP epsilon {epsilon!r}: expected 0.01 <= epsilon <= 1000")
    _check_accounting(1.0, rounds, delta)
    lo, hi = 1e-3, 1000.0
    if _own_epsilon(hi, rounds, delta)[0] > epsilon:
        raise InputError(f"DP epsilon {epsilon}: not reachable over {rounds} rounds at delta "
                         f"{delta} with a noise multiplier up to {hi:g}")
    while hi / lo > 1.001:  # epsilon falls as the noise grows: bisect in log space
        mid = math.sqrt(lo * hi)
        if _own_epsilon(mid, rounds, delta)[0] <= epsilon:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class PrivacyPlan:
    """A run's privacy settings. :meth:`check` refuses the combinations Flower does not support
    (or that would make the reported epsilon false) with one line saying why."""

    dp: str = "none"  # none, server (server-side fixed clipping) or client (on the device)
    noise: float = 0.0  # Gaussian noise multiplier
    clip: float = 0.0  # L2 clipping norm of each device's update
    delta: float = 1e-5
    secagg: bool = False  # SecAgg+ (Flower's legacy workflow)
    strategy: str = "fedavg"

    def check(self) -> None:
        dp, strategy = self.dp.lower(), self.strategy.lower()
        if dp not in DP_MODES:
            raise InputError(f"--dp {self.dp!r:.40}: expected one of {', '.join(DP_MODES)}")
        if strategy not in MEAN_STRATEGIES + ROBUST_STRATEGIES:
            raise InputError(f"strategy {self.strategy!r:.40}: expected one of "
                             f"{', '.join(MEAN_STRATEGIES + ROBUST_STRATEGIES)}")
        if dp == "none":
            if self.noise != 0 or self.clip != 0:
                raise InputError("--dp-noise/--dp-clip need --dp server or --dp client")
        else:
            if not (math.isfinite(self.clip) and 0 < self.clip <= 1e6):
                raise InputError(f"--dp-clip {self.clip!r}: expected 0 < clip <= 1e6")
            _check_accounting(self.noise, 1, self.delta)
        if self.secagg and strategy in ROBUST_STRATEGIES:
            raise InputError(f"SecAgg+ with {strategy}: the server only sees the masked sum of "
                             "the updates, which a robust aggregation cannot use; use fedavg")
        if self.secagg and dp == "server":
            raise InputError("SecAgg+ with server-side clipping: the server never sees a single "
                             "update to clip; use --dp client (clipping on the device)")
        if self.secagg and strategy != "fedavg":
            raise InputError(f"SecAgg+ with {strategy}: Flower's SecAgg+ runs on its legacy "
                             "workflow, which edgeloop drives with FedAvg only")
        if dp != "none" and strategy in ROBUST_STRATEGIES:
            raise InputError(f"DP with {strategy}: the noise is calibrated to the mean's "
                             "sensitivity, a robust aggregate's is larger, so no epsilon could "
                             "be claimed; use fedavg, fedprox or fedadam")

    @property
    def enabled(self) -> bool:
        return self.dp.lower() != "none"

    def spend(self, rounds: int) -> PrivacySpend | None:
        """The epsilon ``rounds`` completed rounds spent, or None without DP."""
        self.check()
        return rdp_epsilon(self.noise, rounds, self.delta) if self.enabled else None


def combinations() -> list[dict[str, str]]:
    """The table of privacy combinations (docs/federated.md prints it): each row says whether
    :meth:`PrivacyPlan.check` accepts it, and why not."""
    rows: list[dict[str, str]] = []
    kinds = {"fedavg": "fedavg", "fedprox / fedadam": "fedprox", "robust (fedmedian, "
             "fedtrimmedavg, krum)": "fedmedian"}
    for dp in DP_MODES:
        for secagg in (False, True):
            for label, strategy in kinds.items():
                plan = PrivacyPlan(dp=dp, noise=1.0 if dp != "none" else 0.0,
                                   clip=1.0 if dp != "none" else 0.0, secagg=secagg,
                                   strategy=strategy)
                try:
                    plan.check()
                    verdict = "yes"
                except InputError as e:
                    verdict = f"no: {str(e).split(': ', 1)[-1]}"
                rows.append({"dp": dp, "secagg": "yes" if secagg else "no",
                             "strategy": label, "supported": verdict})
    return rows


def privacy_spend(noise: float, clip: float, strategy: str, rounds: int,
                  delta: float = 1e-5) -> dict[str, Any]:
    """What a run's record says it spent with server-side DP over ``rounds`` configured rounds
    (an upper bound: a round below quorum releases nothing): epsilon at ``delta``, or, where
    no epsilon can be claimed (a robust strategy), None and why."""
    plan = PrivacyPlan(dp="server", noise=noise, clip=clip, delta=delta, strategy=strategy)
    try:
        spent = plan.spend(rounds)
    except InputError as e:
        return {"epsilon": None, "delta": delta, "epsilon_note": str(e)}
    assert spent is not None
    return {"epsilon": round(spent.epsilon, 4), "delta": delta, "accountant": spent.method}
