"""Flower's strategies, with what edgeloop adds around them: decoded updates and a quorum.

:func:`make_strategy` builds one of Flower's Message-API strategies by name (FedAvg, FedProx,
FedAdam, FedMedian, FedTrimmedAvg, Krum). :class:`RoundGuard` wraps it:

- clients send *encoded deltas* (``federated.device.encode_update``); the guard decodes each
  reply against the global arrays it sent, checking it like any network input (a reply that
  does not decode, or whose weight is not a positive finite count, is rejected, never
  aggregated), and hands the strategy full arrays, so Flower's aggregation runs unchanged;
- a round closes with the clients that answered within the timeout; below ``quorum`` valid
  answers nothing is aggregated and the global model stays as it was;
- bytes are counted on the server (what came in, what went out), not taken from clients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    Strategy,
)

from edgeloop.errors import EdgeloopError, InputError
from edgeloop.federated.device import decode_update, wire_bytes

__all__ = ["STRATEGIES", "RoundGuard", "RoundLog", "make_strategy"]

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedmedian", "fedtrimmedavg", "krum")
MAX_WEIGHT = 1 << 31


def make_strategy(name: str, *, fraction: float = 1.0, min_nodes: int = 2,
                  proximal_mu: float = 0.01, malicious: int = 0, trim: float = 0.2,
                  server_lr: float = 0.1) -> Strategy:
    """One of :data:`STRATEGIES`; ``malicious`` is Krum's assumed number of attackers, ``trim``
    FedTrimmedAvg's cut per side, ``server_lr`` FedAdam's step."""
    name = name.lower()
    if name not in STRATEGIES:
        raise InputError(f"strategy {name!r:.40}: expected one of {', '.join(STRATEGIES)}")
    if not (0 < fraction <= 1 and math.isfinite(fraction)):
        raise InputError(f"fraction of clients per round {fraction!r}: expected 0 < f <= 1")
    common: dict[str, Any] = {"fraction_train": fraction, "fraction_evaluate": fraction,
                              "min_train_nodes": min_nodes, "min_evaluate_nodes": min_nodes,
                              "min_available_nodes": min_nodes}
    if name == "fedavg":
        return FedAvg(**common)
    if name == "fedprox":
        if not (0 < proximal_mu <= 100):
            raise InputError(f"proximal mu {proximal_mu!r}: expected 0 < mu <= 100")
        return FedProx(**common, proximal_mu=proximal_mu)
    if name == "fedadam":
        return FedAdam(**common, eta=server_lr, eta_l=server_lr)
    if name == "fedmedian":
        return FedMedian(**common)
    if name == "fedtrimmedavg":
        if not 0 <= trim < 0.5:
            raise InputError(f"trim {trim!r}: expected 0 <= trim < 0.5")
        return FedTrimmedAvg(**common, beta=trim)
    return Krum(**common, num_malicious_nodes=malicious)


@dataclass
class RoundLog:
    """What one round did (counts, never node ids)."""

    round: int
    sampled: int = 0
    answered: int = 0
    failed: int = 0  # error replies
    rejected: int = 0  # replies that did not decode or check out
    aggregated: bool = False
    bytes_up: int = 0  # encoded updates received
    bytes_down: int = 0  # global arrays sent
    train_loss: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _State:
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    rounds: list[RoundLog] = field(default_factory=list)


class RoundGuard(Strategy):
    """``inner`` with decoded updates and a quorum (see the module)."""

    def __init__(self, inner: Strategy, *, quorum: int = 1) -> None:
        if quorum < 1:
            raise InputError(f"quorum {quorum}: expected at least 1")
        self.inner = inner
        self.quorum = quorum
        self._state = _State()

    @property
    def rounds(self) -> list[RoundLog]:
        return self._state.rounds

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._state.arrays = {k: v.numpy() for k, v in arrays.items()}
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        size = sum(a.nbytes for a in self._state.arrays.values())
        self._state.rounds.append(RoundLog(server_round, sampled=len(messages),
                                           bytes_down=size * len(messages)))
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message],
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        log = self._state.rounds[-1]
        ok: list[Message] = []
        losses: list[tuple[float, float]] = []
        for msg in replies:
            log.answered += 1
            if msg.has_error():
                log.failed += 1
                continue
            try:
                full, n, loss, nbytes = self._decode(msg)
            except (EdgeloopError, KeyError, TypeError, ValueError):
                log.rejected += 1
                continue
            log.bytes_up += nbytes
            msg.content = RecordDict({
                "arrays": ArrayRecord({k: Array(v) for k, v in full.items()}),
                "metrics": MetricRecord({"num-examples": n}),
            })
            ok.append(msg)
            if loss is not None:
                losses.append((loss, n))
        if losses:
            log.train_loss = sum(v * w for v, w in losses) / sum(w for _, w in losses)
        if len(ok) < self.quorum:
            log.note = f"{len(ok)} valid updates, below the quorum of {self.quorum}: not aggregated"
            return None, None
        arrays, metrics = self.inner.aggregate_train(server_round, ok)
        if arrays is not None and not all(np.all(np.isfinite(v.numpy()))
                                          for v in arrays.values()):
            log.note = "the aggregate was not finite: not applied"
            return None, None
        log.aggregated = arrays is not None
        missing = log.sampled - log.answered
        if log.aggregated and missing > 0:
            log.note = (f"{missing} of {log.sampled} sampled devices did not answer (dropped "
                        f"out or late): aggregated {len(ok)} updates, quorum {self.quorum}")
        return arrays, metrics

    def _decode(self, msg: Message) -> tuple[dict[str, np.ndarray], int, float | None, int]:
        content = msg.content
        encoded = {k: v.numpy() for k, v in content.array_records["arrays"].items()}
        metrics = content.metric_records["metrics"]
        n = metrics["num-examples"]
        if isinstance(n, bool) or not isinstance(n, int | float) or not 0 < n <= MAX_WEIGHT \
                or not math.isfinite(n):
            raise InputError(f"num-examples {n!r:.40}: expected a positive count")
        delta = decode_update(encoded, self._state.arrays)
        full = {k: (v + delta[k]).astype(np.float32) for k, v in self._state.arrays.items()}
        loss = metrics.get("train-loss")
        value = float(loss) if isinstance(loss, float | int) and math.isfinite(loss) else None
        return full, int(n), value, wire_bytes(encoded)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message],
                           ) -> MetricRecord | None:
        valid = [m for m in replies if not m.has_error() and _eval_ok(m)]
        return self.inner.aggregate_evaluate(server_round, valid) if valid else None


def _eval_ok(msg: Message) -> bool:
    """An evaluate reply whose metrics are finite, in range, with a positive count."""
    try:
        m = msg.content.metric_records["metrics"]
        n = m["num-examples"]
        values = [v for k, v in m.items() if k != "num-examples"]
    except (KeyError, TypeError, ValueError):
        return False
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_WEIGHT:
        return False
    return all(isinstance(v, float | int) and math.isfinite(v) and abs(v) < 1e9 for v in values)
