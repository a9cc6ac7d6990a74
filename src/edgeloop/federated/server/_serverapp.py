"""The ServerApp: rounds with a guarded Flower strategy, then the federated evaluation gate.

:func:`run_rounds` runs ``strategy.start`` (Flower's own round loop) on any ``Grid``: a
SuperLink's in deployment, :class:`InProcessGrid` in simulation. :func:`evaluate_gate` asks every
node to score the candidate and the base on its held-out labelled samples (Flower's evaluate
step, one message carrying both) and aggregates by sample count: the candidate is accepted only
if its accuracy beats the base's by ``min_gain``. :func:`server_app` wraps both in a
``flwr.serverapp.ServerApp`` whose outcome lands in a :class:`RunOutcome`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from edgeloop.federated.server._strategy import RoundGuard, RoundLog

__all__ = ["GateResult", "RunOutcome", "evaluate_gate", "run_rounds", "server_app"]

Arrays = dict[str, np.ndarray]


def to_record(arrays: Arrays) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v, np.float32)) for k, v in arrays.items()})


@dataclass(frozen=True)
class GateResult:
    """The federated evaluation of a candidate against its base."""

    accepted: bool
    reason: str
    candidate_accuracy: float | None
    base_accuracy: float | None
    candidate_loss: float | None
    base_loss: float | None
    nodes: int  # that answered with held-out samples
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunOutcome:
    arrays: Arrays = field(default_factory=dict)
    rounds: list[RoundLog] = field(default_factory=list)
    round_accuracy: dict[int, float] = field(default_factory=dict)
    gate: GateResult | None = None


def run_rounds(grid: Grid, guard: RoundGuard, initial: Arrays, *, rounds: int,
               train_config: dict[str, Any], timeout: float,
               on_round: Callable[[RoundLog], None] | None = None,
               checkpoint: Callable[[int, Arrays], None] | None = None) -> RunOutcome:
    """Federated rounds; the global arrays after the last round that reached its quorum.
    ``checkpoint(round, arrays)`` gets the new global arrays after each aggregated round."""
    outcome = RunOutcome(arrays=dict(initial))
    if on_round is not None or checkpoint is not None:
        inner = guard.aggregate_train

        def report(server_round: int, replies: Any) -> Any:
            out = inner(server_round, replies)
            if checkpoint is not None and out[0] is not None:
                checkpoint(server_round, {k: v.numpy() for k, v in out[0].items()})
            if on_round is not None:
                on_round(guard.rounds[-1])
            return out

        guard.aggregate_train = report  # type: ignore[method-assign]
    result = guard.start(grid, to_record(initial), num_rounds=rounds, timeout=timeout,
                         train_config=ConfigRecord(train_config),
                         evaluate_config=ConfigRecord({"trainer": train_config.get("trainer",
                                                                                   "head")}))
    if result.arrays is not None and len(result.arrays):
        outcome.arrays = {k: v.numpy() for k, v in result.arrays.items()}
    outcome.rounds = list(guard.rounds)
    for r, metrics in result.evaluate_metrics_clientapp.items():
        acc = metrics.get("eval-acc")
        if isinstance(acc, float | int):
            outcome.round_accuracy[r] = float(acc)
    return outcome


def evaluate_gate(grid: Grid, candidate: Arrays, base: Arrays, *, trainer: str = "head",
                  min_gain: float = 0.0, timeout: float = 60.0, min_nodes: int = 1,
                  ) -> GateResult:
    """Score candidate and base on every node's held-out samples; accept a candidate whose
    accuracy beats the base's by at least ``min_gain``."""
    content = RecordDict({"arrays": to_record(candidate), "base": to_record(base),
                          "config": ConfigRecord({"trainer": trainer})})
    messages = [Message(content=content, dst_node_id=n, message_type=MessageType.EVALUATE)
                for n in grid.get_node_ids()]
    totals = np.zeros(4)
    nodes = samples = 0
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            continue
        try:
            m = reply.content.metric_records["metrics"]
            n = m["num-examples"]
            raw = [m["eval-acc"], m["base-acc"], m["eval-loss"], m["base-loss"]]
        except (KeyError, TypeError, ValueError):
            continue
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n < 1 << 31:
            continue
        vals = [float(v) for v in raw if isinstance(v, float | int) and math.isfinite(v)]
        if len(vals) != 4:
            continue
        if not (0 <= vals[0] <= 1 and 0 <= vals[1] <= 1):
            continue
        totals += n * np.array(vals, np.float64)
        nodes += 1
        samples += n
    if nodes < min_nodes:
        return GateResult(False, f"{nodes} nodes answered the evaluation with held-out samples, "
                          f"fewer than {min_nodes}: nothing to judge the candidate on",
                          None, None, None, None, nodes, samples)
    c_acc, b_acc, c_loss, b_loss = (float(v) for v in totals / samples)
    gain = c_acc - b_acc
    if gain >= min_gain and gain > 0:
        reason = (f"candidate accuracy {c_acc:.4f} vs base {b_acc:.4f} on {samples} held-out "
                  f"samples of {nodes} nodes: +{gain:.4f}")
        return GateResult(True, reason, c_acc, b_acc, c_loss, b_loss, nodes, samples)
    reason = (f"candidate accuracy {c_acc:.4f} vs base {b_acc:.4f} on {samples} held-out samples "
              f"of {nodes} nodes: {gain:+.4f}, needs more than "
              f"{max(min_gain, 0.0):+.4f}; not registered")
    return GateResult(False, reason, c_acc, b_acc, c_loss, b_loss, nodes, samples)


def server_app(guard: RoundGuard, initial: Arrays, outcome: RunOutcome, *, rounds: int,
               train_config: dict[str, Any], timeout: float, min_gain: float = 0.0,
               min_eval_nodes: int = 1,
               on_round: Callable[[RoundLog], None] | None = None,
               secagg: Any = None, fraction: float = 1.0,
               seen: list[Message] | None = None) -> ServerApp:
    """A ServerApp running the rounds then the gate; results go into ``outcome``. With
    ``secagg`` (a ``SecAggSettings``) each round's fit is Flower's SecAgg+ workflow
    (``federated.server._secagg``; FedAvg with ``guard``'s quorum, ``fraction`` of the nodes
    sampled), and ``seen`` collects every reply the server received during the rounds."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if secagg is not None:
            from edgeloop.federated.server._secagg import secagg_rounds

            done = secagg_rounds(grid, initial, rounds=rounds, train_config=train_config,
                                 timeout=timeout, quorum=guard.quorum, fraction=fraction,
                                 settings=secagg, on_round=on_round, seen=seen)
        else:
            done = run_rounds(grid, guard, initial, rounds=rounds, train_config=train_config,
                              timeout=timeout, on_round=on_round)
        outcome.arrays, outcome.rounds = done.arrays, done.rounds
        outcome.round_accuracy = done.round_accuracy
        outcome.gate = evaluate_gate(grid, done.arrays, initial,
                                     trainer=str(train_config.get("trainer", "head")),
                                     min_gain=min_gain, timeout=timeout,
                                     min_nodes=min_eval_nodes)

    return app
