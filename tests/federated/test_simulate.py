"""Flower rounds in process: the ServerApp and ClientApp on an InProcessGrid, strategies,
quorum and stragglers, poisoned clients, compression, and the evaluation gate."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")

from edgeloop.errors import InputError  # noqa: E402
from edgeloop.federated.server import (  # noqa: E402
    SimulationPlan,
    read_head,
    simulate,
    with_embedding,
    write_head,
)
from edgeloop.runtime import Session  # noqa: E402
from fl_model import blobs, model_bytes  # noqa: E402

X, Y = blobs(2000)


def _accuracy(model: bytes, seed: int = 1) -> float:
    x, y = blobs(1000, seed)
    probs = Session(model).run({"x": x})["probs"]
    return float(np.mean(probs.argmax(1) == y))


def test_a_federated_head_beats_the_base_and_passes_the_gate() -> None:
    base = model_bytes()
    plan = SimulationPlan(clients=8, rounds=4, partition="iid", strategy="fedavg", epochs=3)
    seen: list[int] = []

    result = simulate(base, X, Y, plan, on_round=lambda r: seen.append(r.round))

    assert seen == [1, 2, 3, 4]
    assert all(r.aggregated and r.answered == 8 for r in result.rounds)
    assert result.gate.accepted, result.gate.reason
    assert _accuracy(result.model) > _accuracy(base) + 0.2
    assert result.gate.candidate_accuracy > result.gate.base_accuracy  # type: ignore[operator]
    assert result.participants()["sampled"] == 32 and result.labelled > 800
    assert result.rounds[0].bytes_up == 8 * 4 * (16 * 4 + 4)


def test_head_read_and_write_round_trip_through_the_graph() -> None:
    served = with_embedding(model_bytes())
    head = read_head(served)
    changed = type(head)(head.weight * 2, head.bias + 1)

    again = read_head(write_head(served, changed))

    assert head.weight.shape == (16, 4)
    assert np.allclose(again.weight, changed.weight) and np.allclose(again.bias, 1)


def test_a_worse_candidate_is_refused_with_the_reason() -> None:
    good = simulate(model_bytes(), X, Y, SimulationPlan(clients=4, rounds=3, epochs=5))
    # the trained model as the base: one more round with a tiny step cannot beat it by 5 points
    plan = SimulationPlan(clients=4, rounds=1, epochs=1, lr=1e-4, min_gain=0.05)

    result = simulate(good.model, X, Y, plan)

    assert not result.gate.accepted
    assert "not registered" in result.gate.reason and "base" in result.gate.reason


@pytest.mark.parametrize("strategy", ["fedprox", "fedadam", "fedmedian", "fedtrimmedavg", "krum"])
def test_every_strategy_improves_the_head(strategy: str) -> None:
    plan = SimulationPlan(clients=6, rounds=3, strategy=strategy, epochs=3)
    result = simulate(model_bytes(), X, Y, plan)
    assert result.gate.accepted, result.gate.reason


def test_poisoned_clients_break_fedavg_but_not_median_or_krum() -> None:
    def acc(strategy: str) -> float:
        plan = SimulationPlan(clients=10, rounds=4, strategy=strategy, poisoned=0.2,
                              poison_scale=20.0, epochs=3)
        result = simulate(model_bytes(), X, Y, plan)
        assert result.poisoned == 2
        return _accuracy(result.model)

    fedavg, median, krum = acc("fedavg"), acc("fedmedian"), acc("krum")

    assert median > fedavg + 0.2 and krum > fedavg + 0.2


def test_stragglers_are_left_out_and_a_round_below_quorum_changes_nothing() -> None:
    plan = SimulationPlan(clients=10, rounds=6, stragglers=0.5, quorum=0.6, epochs=2, seed=3)
    result = simulate(model_bytes(), X, Y, plan)
    answered = [r.answered for r in result.rounds]
    assert any(a < 10 for a in answered)
    short = [r for r in result.rounds if r.answered < 6]
    assert short and all(not r.aggregated and "quorum" in r.note for r in short)
    assert all(r.aggregated for r in result.rounds if r.answered >= 6)


@pytest.mark.parametrize("compression, per_client",
                         [("int8", 16 * 4 + 4 + 8), ("topk:0.25", 8 * (16 + 1))])
def test_compressed_updates_weigh_less_and_still_learn(compression: str, per_client: int) -> None:
    plan = SimulationPlan(clients=6, rounds=3, compression=compression, epochs=3)
    result = simulate(model_bytes(), X, Y, plan)
    assert result.gate.accepted, result.gate.reason
    assert result.rounds[0].bytes_up == 6 * per_client


def test_drifted_and_non_iid_partitions_run() -> None:
    for spec in ("dirichlet:0.3", "drift:0.25"):
        result = simulate(model_bytes(), X, Y, SimulationPlan(clients=8, rounds=2,
                                                              partition=spec))
        assert result.gate.accepted, (spec, result.gate.reason)
    assert result.drifted == 2


def test_central_dp_is_recorded_as_the_runs_privacy() -> None:
    plan = SimulationPlan(clients=6, rounds=2, dp_noise=0.1, dp_clip=5.0)
    result = simulate(model_bytes(), X, Y, plan)
    assert result.privacy["noise_multiplier"] == 0.1
    assert result.record()["privacy"]["clipping_norm"] == 5.0


@pytest.mark.parametrize("kw", [{"clients": 1}, {"partition": "zipf"}, {"compression": "gz"},
                                {"poisoned": 0.6}, {"dp_noise": 1.0}, {"trainer": "lora"},
                                {"label_share": 0.0}, {"rounds": 0}])
def test_bad_plans_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(InputError):
        SimulationPlan(**kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_full_trainer_fine_tunes_the_whole_torch_model() -> None:
    torch = pytest.importorskip("torch")
    import io

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    with torch.no_grad():
        net[2].weight.mul_(0.05)
    buf = io.BytesIO()
    from edgeloop.zoo import torch_to_onnx

    torch_to_onnx(net, (torch.zeros(2, 8),), buf, input_names=["x"], output_names=["probs"],
                  exporter="torchscript")
    base = buf.getvalue()
    first = net[0].weight.detach().clone()
    plan = SimulationPlan(clients=4, rounds=3, trainer="full", epochs=3, lr=0.05)

    result = simulate(base, X, Y, plan, torch_model=net)

    assert result.gate.accepted, result.gate.reason
    assert _accuracy_logits(result.model) > _accuracy_logits(base) + 0.2
    assert not torch.equal(net[0].weight, first)  # the first layer moved too
    assert result.rounds[0].bytes_up == 4 * 4 * (8 * 16 + 16 + 16 * 4 + 4)


def _accuracy_logits(model: bytes) -> float:
    x, y = blobs(1000, 1)
    out = Session(model).run({"x": x})
    return float(np.mean(out["probs"].argmax(1) == y))


def test_the_full_trainer_needs_the_torch_module() -> None:
    with pytest.raises(InputError, match="torch module"):
        simulate(model_bytes(), X, Y, SimulationPlan(clients=2, rounds=1, trainer="full"))


def test_drift_inputs_is_the_sensor_a_drifted_device_records_with() -> None:
    """Time series: one gain (1 +- 0.3) per feature and an offset of 0.5 at severity 1, fixed
    by the seed; images: data.sensor_shift; severity 0 leaves the inputs alone."""
    from edgeloop.data import sensor_shift
    from edgeloop.federated.server import drift_inputs

    rng = np.random.default_rng(0)  # away from 0, so the gain reads back exactly
    x = (rng.choice([-1, 1], (50, 3, 8)) * rng.uniform(0.5, 2, (50, 3, 8))).astype(np.float32)
    a, b = drift_inputs(x, 1.0, 7), drift_inputs(x, 1.0, 8)
    assert a.dtype == np.float32 and np.array_equal(a, drift_inputs(x, 1.0, 7))
    gain = (a - 0.5) / x
    assert np.allclose(np.abs(gain - 1), 0.3, atol=1e-4)
    assert np.allclose(gain, gain[:1], atol=1e-4)  # the same sensor for every sample
    assert not np.allclose(a, b)
    assert np.array_equal(drift_inputs(x, 0.0, 7), x)
    img = np.random.default_rng(1).random((4, 3, 16, 16)).astype(np.float32)
    assert np.array_equal(drift_inputs(img, 1.0, 3), sensor_shift(img, 1.0, 3))
