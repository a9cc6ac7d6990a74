"""The same ServerApp and ClientApp on Flower's Ray simulation runtime, at small size. Skipped
where Ray is not installed (``flwr[simulation]``; the project's main environment leaves it out)."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")
pytest.importorskip("ray", reason="Flower's Ray simulation needs flwr[simulation]")

from edgeloop.federated.server import SimulationPlan, simulate  # noqa: E402
from fl_model import blobs, model_bytes  # noqa: E402


@pytest.mark.slow
def test_rounds_on_ray_improve_the_head_and_pass_the_gate() -> None:
    x, y = blobs(800)
    plan = SimulationPlan(clients=3, rounds=2, epochs=3, backend="ray", poisoned=0.0)

    result = simulate(model_bytes(), x, y, plan)

    # Flower samples among the nodes connected when a round starts: 2 or 3 in the first
    assert all(r.answered == r.sampled >= 2 and r.aggregated for r in result.rounds)
    assert result.gate.accepted, result.gate.reason
