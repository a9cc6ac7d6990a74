"""The round guard: updates that do not check out are rejected, failing clients counted, and
the aggregate stays finite (hostile clients on an InProcessGrid)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, Context, Message, MessageType, MetricRecord  # noqa: E402

from edgeloop.federated.device import Head, HeadTrainer, client_app, split_held_out  # noqa: E402
from edgeloop.federated.server import (  # noqa: E402
    InProcessGrid,
    RoundGuard,
    make_strategy,
    run_rounds,
)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    return (np.eye(4, 16)[y] * 3 + rng.normal(size=(n, 16))).astype(np.float32), y


def test_bad_updates_are_rejected_and_failures_counted() -> None:
    trainers = {i: {"head": HeadTrainer(*split_held_out(*_data(60 if i != 5 else 0, i)))}
                for i in range(1, 7)}
    app = client_app(lambda ctx: trainers[ctx.node_id])

    def node(msg: Message, ctx: Context) -> Message:
        reply = app(msg, ctx)
        if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        if ctx.node_id == 1:  # not finite
            reply.content["arrays"] = ArrayRecord({
                "weight::f32": Array(np.full((16, 4), np.nan, np.float32)),
                "bias::f32": Array(np.zeros(4, np.float32))})
        elif ctx.node_id == 2:  # a negative weight
            reply.content["metrics"] = MetricRecord({"num-examples": -5})
        elif ctx.node_id == 3:  # the wrong shape
            reply.content["arrays"] = ArrayRecord({
                "weight::f32": Array(np.zeros((4, 16), np.float32)),
                "bias::f32": Array(np.zeros(4, np.float32))})
        return reply

    grid = InProcessGrid(node, 6)  # node 5 has no labelled samples: its ClientApp raises
    guard = RoundGuard(make_strategy("fedavg"), quorum=2)

    out = run_rounds(grid, guard, dict(Head.zeros(16, 4).to_arrays()), rounds=1,
                     train_config={"epochs": 2, "lr": 0.1}, timeout=60)

    log = guard.rounds[0]
    assert (log.sampled, log.answered, log.failed, log.rejected) == (6, 6, 1, 3)
    assert log.aggregated and all(np.all(np.isfinite(v)) for v in out.arrays.values())
    assert np.any(out.arrays["weight"] != 0)


def test_below_quorum_the_global_model_stays() -> None:
    trainers = {i: {"head": HeadTrainer(*split_held_out(*_data(40, i)))} for i in (1, 2, 3)}
    grid = InProcessGrid(client_app(lambda ctx: trainers[ctx.node_id]), 3,
                         latency=lambda node, msg: 100.0 if node != 1 else 0.0)
    guard = RoundGuard(make_strategy("fedavg"), quorum=2)
    start = dict(Head.zeros(16, 4).to_arrays())

    out = run_rounds(grid, guard, start, rounds=2, train_config={}, timeout=10)

    assert [r.answered for r in guard.rounds] == [1, 1] and grid.dropped >= 4
    assert not any(r.aggregated for r in guard.rounds)
    assert all(np.array_equal(out.arrays[k], start[k]) for k in start)


@pytest.mark.parametrize("name", ["fedavgx", ""])
def test_unknown_strategies_are_refused(name: str) -> None:
    from edgeloop.errors import InputError

    with pytest.raises(InputError, match="strategy"):
        make_strategy(name)
