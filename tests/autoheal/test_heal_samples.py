"""The heal pipeline on what a cohort's devices hold: the model's inputs (a data set, the CLI's
simulated cohort) or its embeddings (what an agent keeps when its reference watches the
embedding). Both fine-tune the same head; the re-baselined reference keeps the base's
embedding projection."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")

from fl_model import blobs, model_bytes  # noqa: E402


def _devices(n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    x, y = blobs(270, seed=3)
    return [(x[i::n], y[i::n]) for i in range(n)]


def test_embeddings_fine_tune_the_head_the_inputs_would() -> None:
    from edgeloop.federated.device import EMBEDDING_OUTPUT
    from edgeloop.federated.server import with_embedding
    from edgeloop.loop import HealPlan
    from edgeloop.loop._heal import _federate
    from edgeloop.runtime import Session

    base = with_embedding(model_bytes())
    sess = Session(base, providers=["CPUExecutionProvider"])
    devices = _devices()
    embedded = [(np.asarray(sess.run({"x": x})[EMBEDDING_OUTPUT]), y) for x, y in devices]
    plan = HealPlan(rounds=2, epochs=2)
    from_inputs = _federate(base, devices, plan)
    from_embeddings = _federate(base, embedded, plan, embedded=True)
    assert np.allclose(from_inputs.head.weight, from_embeddings.head.weight, atol=1e-4)
    assert from_inputs.gate.to_dict() == from_embeddings.gate.to_dict()
    assert from_inputs.labelled == from_embeddings.labelled == 270


def test_the_rebaselined_reference_keeps_the_base_projection() -> None:
    from edgeloop.bundle import model_reference
    from edgeloop.federated.device import EMBEDDING_OUTPUT
    from edgeloop.federated.server import with_embedding
    from edgeloop.loop import HealPlan, HealResult
    from edgeloop.loop._heal import _federate, _register_inputs
    from edgeloop.runtime import Session

    base = with_embedding(model_bytes())
    x, y = blobs(200, seed=9)
    base_ref = model_reference(base, x, y, embedding_output=EMBEDDING_OUTPUT)
    assert base_ref.projection is not None and base_ref.output_kind == "probabilities"
    sess = Session(base, providers=["CPUExecutionProvider"])
    devices = [(np.asarray(sess.run({"x": d * 0.5})[EMBEDDING_OUTPUT]), t)
               for d, t in _devices()]  # the cohort's shifted inputs, as embeddings
    run = _federate(base, devices, HealPlan(rounds=2, epochs=2), embedded=True)
    res = HealResult(job_id=1, model="fl", base_version=1, cohort="region=north", event_id=5,
                     ok=False, reason="")
    _, card, ref = _register_inputs(run, devices, None, res, {"reason": "drift"}, None, base_ref,
                                    base_ref.projection)
    assert ref.projection is not None  # the same components: none shipped again
    assert np.array_equal(ref.projection.components, base_ref.projection.components)
    assert ref.output_kind == "probabilities" and ref.n == 270
    emb = np.concatenate([d for d, _ in devices]).astype(np.float64)
    moved = ref.projection.apply(emb)[:, 0]
    assert ref.features[0].mean == pytest.approx(float(moved.mean()))  # re-fitted histograms
    # the new head's predictions on those embeddings are the class counts it was baselined on
    pred = np.asarray(run.head.logits(emb)).argmax(axis=1)
    assert ref.class_counts.tolist() == np.bincount(pred, minlength=4).tolist()
    assert any(r.role == "monitor_alert" for r in card.lineage)
