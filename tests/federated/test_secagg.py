"""SecAgg+ actually run: Flower's SecAggPlusWorkflow on the server, its secaggplus_mod in every
ClientApp (edgeloop's secagg_mod), over the in-process grid. The unmasked mean equals plain
FedAvg's within the quantization error, a device dropping out mid-protocol is unmasked away,
and nothing the server received holds a single update."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")

from flwr.app import Context, Message, MessageType  # noqa: E402

from edgeloop.errors import InputError  # noqa: E402
from edgeloop.federated.device import (  # noqa: E402
    Head,
    HeadTrainer,
    client_app,
    decode_update,
    split_held_out,
)
from edgeloop.federated.server import (  # noqa: E402
    InProcessGrid,
    SecAggSettings,
    SimulationPlan,
    read_head,
    secagg_rounds,
    simulate,
    with_embedding,
)
from fl_model import blobs, model_bytes  # noqa: E402

CONFIG = {"trainer": "head", "epochs": 3, "lr": 0.05, "batch-size": 32, "compression": "none",
          "seed": 0}


def _nodes(n: int) -> dict[int, dict[str, Any]]:
    rng = np.random.default_rng(7)
    out = {}
    for i in range(1, n + 1):
        m = 60 + 25 * i  # unequal sample counts: the mean is weighted
        x = rng.normal(size=(m, 6)).astype(np.float32)
        y = (x[:, 0] + 0.3 * i * x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0.5)
        out[i] = {"head": HeadTrainer(*split_held_out(x, y))}
    return out


def _run(n: int, *, latency: Any = None, settings: SecAggSettings | None = None,
         ) -> tuple[dict[str, np.ndarray], dict[int, tuple[dict[str, np.ndarray], int]],
                    list[Message], Any]:
    """One SecAgg+ round; (initial arrays, each node's true delta and weight, every reply the
    server received, the outcome)."""
    trainers = _nodes(n)
    true: dict[int, tuple[dict[str, np.ndarray], int]] = {}
    initial = {k: np.asarray(v) for k, v in
               Head(np.zeros((6, 4), np.float32), np.zeros(4, np.float32)).to_arrays().items()}

    def recorder(msg: Message, ctx: Context, call_next: Any) -> Message:
        """Inside secagg_mod: what the device's app computed, before any masking."""
        start = {k: v.numpy() for k, v in msg.content.array_records["arrays"].items()} \
            if msg.metadata.message_type == MessageType.TRAIN else {}
        reply = call_next(msg, ctx)
        if start and not reply.has_error():
            enc = {k: v.numpy() for k, v in reply.content.array_records["arrays"].items()}
            n_ex = int(reply.content.metric_records["metrics"]["num-examples"])
            true[ctx.node_id] = (decode_update(enc, start), n_ex)
        return reply

    app = client_app(lambda ctx: trainers[ctx.node_id], mods=[recorder])
    grid = InProcessGrid(app, n, latency=latency)
    seen: list[Message] = []
    outcome = secagg_rounds(grid, initial, rounds=1, train_config=CONFIG, timeout=30,
                            quorum=2, settings=settings, seen=seen)
    return initial, true, seen, outcome


def _fedavg(true: dict[int, tuple[dict[str, np.ndarray], int]], keys: list[str],
            ) -> dict[str, np.ndarray]:
    total = sum(w for _, w in true.values())
    return {k: sum(d[k].astype(np.float64) * w for d, w in true.values()) / total for k in keys}


def test_the_secagg_mean_is_fedavgs_within_the_quantization_error() -> None:
    settings = SecAggSettings()
    initial, true, _, outcome = _run(5, settings=settings)
    log = outcome.rounds[0]
    assert log.aggregated and log.answered == 5 and log.failed == 0, log.note
    plain = _fedavg(true, list(initial))
    bound = settings.step(sum(w for _, w in true.values()), 5)
    for k, v in initial.items():
        got = outcome.arrays[k] - v
        err = float(np.max(np.abs(got - plain[k])))
        assert err <= bound, (k, err, bound)
        assert float(np.max(np.abs(plain[k]))) > 100 * bound  # the updates are not ~0
    assert log.bytes_up > 0 and log.bytes_down > 0


def test_no_single_update_reaches_the_server() -> None:
    from flwr.common import bytes_to_ndarray
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

    settings = SecAggSettings()
    initial, true, seen, outcome = _run(4, settings=settings)
    assert outcome.rounds[0].aggregated and len(true) == 4
    replies = [m for m in seen if m.has_content()]
    # no reply carries an array (the app's delta is cleared from the reply by the mod)
    assert all(len(a) == 0 for m in replies for a in m.content.array_records.values())
    masked = [m.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
              for m in replies
              if Key.MASKED_PARAMETERS in m.content.config_records.get(RECORD_KEY_CONFIGS, {})]
    assert len(masked) == 4
    keys = sorted(initial)
    level = 2 * settings.clip_range / settings.quantization
    for vec in masked:
        parts = [bytes_to_ndarray(b) for b in vec][1:]  # the first is the weight factor
        flat = np.concatenate([p.reshape(-1) for p in parts]).astype(np.float64)
        # masked values spread over the whole modulus (2**32; a uniform's std is 0.29 of it),
        # not around the quantized zero (2**21): 28 values, so a loose bound that cannot flake
        assert flat.std() > 2**28
        for delta, w in true.values():  # and none is any device's own quantized update
            q = np.concatenate([((delta[k] * w / settings.max_weight + settings.clip_range)
                                 / level).reshape(-1) for k in keys])
            assert np.mean(np.abs(flat - q)) > 2**28
            assert abs(np.corrcoef(flat, q)[0, 1]) < 0.9
    # nor does any byte string the server received hold a device's delta in plain float32
    blobs_seen = [item for m in replies for rec in m.content.config_records.values()
                  for v in rec.values() for item in (v if isinstance(v, list) else [v])
                  if isinstance(item, bytes)]
    assert blobs_seen
    for delta, _ in true.values():
        for k in keys:
            raw = np.ascontiguousarray(delta[k], np.float32).tobytes()
            assert not any(raw in item for item in blobs_seen)


def test_a_device_dropping_out_mid_protocol_is_unmasked_away() -> None:
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Stage

    def latency(node: int, msg: Message) -> float:  # node 3 vanishes once it holds the shares
        cfg = msg.content.config_records.get(RECORD_KEY_CONFIGS, {})
        return 99.0 if node == 3 and cfg.get("stage") == Stage.COLLECT_MASKED_VECTORS else 0.0

    settings = SecAggSettings()
    initial, true, _, outcome = _run(5, latency=latency, settings=settings)
    log = outcome.rounds[0]
    assert log.aggregated and log.answered == 4 and log.failed == 1, log.note
    assert "dropped out during SecAgg+" in log.note
    # node 3 trained on its copy but its reply never arrived: the mean is the other four's
    survivors = {n: t for n, t in true.items() if n != 3}
    plain = _fedavg(survivors, list(initial))
    bound = settings.step(sum(w for _, w in survivors.values()), 4)
    for k, v in initial.items():
        assert float(np.max(np.abs(outcome.arrays[k] - v - plain[k]))) <= bound


def test_too_many_dropouts_halt_the_round_and_nothing_is_applied() -> None:
    def latency(node: int, msg: Message) -> float:
        return 99.0 if node > 1 and msg.metadata.message_type == MessageType.TRAIN else 0.0

    initial, _, _, outcome = _run(4, latency=latency, settings=SecAggSettings(threshold=0.75))
    log = outcome.rounds[0]
    assert not log.aggregated and "halted" in log.note
    assert all(np.array_equal(outcome.arrays[k], v) for k, v in initial.items())


def test_simulate_with_secagg_matches_plain_fedavg_and_refuses_what_it_cannot_do() -> None:
    x, y = blobs(1200)
    base = model_bytes()
    plain = simulate(base, x, y, SimulationPlan(clients=4, rounds=2, epochs=3))
    masked = simulate(base, x, y, SimulationPlan(clients=4, rounds=2, epochs=3, secagg=True))
    assert all(r.aggregated and r.answered == 4 for r in masked.rounds)
    assert masked.gate.accepted, masked.gate.reason
    before = read_head(with_embedding(base)).weight
    moved = float(np.max(np.abs(plain.head.weight - before)))
    assert float(np.max(np.abs(masked.head.weight - plain.head.weight))) < 0.01 * moved
    assert "SecAgg+" in masked.record()["privacy"]["mechanism"]
    bad_plans: list[tuple[dict[str, Any], str]] = [
        ({"strategy": "krum"}, "robust"), ({"compression": "int8"}, "dense"),
        ({"dp_noise": 1.0, "dp_clip": 1.0}, "server-side clipping"),
        ({"poisoned": 0.2}, "poisoned")]
    for bad, match in bad_plans:
        with pytest.raises(InputError, match=match):
            SimulationPlan(secagg=True, **bad)
    with pytest.raises(InputError, match="threshold"):
        SecAggSettings(threshold=0.0)


@pytest.mark.slow
def test_cli_fl_simulate_secagg_runs_and_refuses_a_robust_strategy_in_one_line(
        tmp_path: Any, cli: Any) -> None:
    import json

    (tmp_path / "base.onnx").write_bytes(model_bytes())
    x, y = blobs(800)
    np.savez(tmp_path / "feed.npz", x=x, y=y)
    run = cli("fl", "simulate", "--model", "base.onnx", "--dataset", "feed.npz", "--clients",
              "4", "--rounds", "2", "--epochs", "3", "--secagg", "--no-register", "--out",
              "run", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["gate"]["accepted"]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["plan"]["secagg"] and "SecAgg+" in record["privacy"]["mechanism"]
    assert all(r["aggregated"] for r in record["rounds"])
    bad = cli("fl", "simulate", "--model", "base.onnx", "--dataset", "feed.npz", "--secagg",
              "--strategy", "krum", "--out", "bad")
    assert bad.returncode != 0 and "SecAgg+ with krum" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
