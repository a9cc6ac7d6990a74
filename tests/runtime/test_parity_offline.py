"""The runtime's parity check, offline graph optimisation and operator profiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeloop.errors import InputError, ModelFormatError, ParityError
from edgeloop.runtime import Session, check_parity, save_optimized


def test_parity_returns_the_largest_difference(identity_classifier: Path) -> None:
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=np.float32)
    reference = [x + np.float32(1e-5)]

    worst = check_parity(identity_classifier, {"x": x}, reference, atol=1e-4, rtol=0.0)

    assert worst == pytest.approx(1e-5, rel=0.2)


def test_parity_names_the_output_and_the_reference(identity_classifier: Path) -> None:
    x = np.ones((2, 3), dtype=np.float32)

    with pytest.raises(ParityError, match=r"output 0 .* differs from PyTorch by up to 0.5"):
        check_parity(
            identity_classifier, {"x": x}, [x + 0.5], atol=0.1, rtol=0.0, against="PyTorch"
        )


def test_save_optimized_writes_a_graph_the_runtime_loads(
    identity_classifier: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "opt.onnx"

    written = save_optimized(identity_classifier, dest, graph_optimization="extended")

    x = np.eye(3, dtype=np.float32)
    assert written == dest
    assert np.allclose(Session(dest).run({"x": x})["logits"], x)


def test_save_optimized_refuses_a_bad_level_and_a_bad_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")

    with pytest.raises(InputError, match="'fastest' is not one of"):
        save_optimized(bad, tmp_path / "o.onnx", graph_optimization="fastest")
    with pytest.raises(ModelFormatError, match="could not optimise"):
        save_optimized(bad, tmp_path / "o.onnx")


def test_profiling_writes_a_trace_of_the_runs(identity_classifier: Path, tmp_path: Path) -> None:
    session = Session(identity_classifier, profile=tmp_path / "trace")
    session.run({"x": np.ones((1, 3), dtype=np.float32)})

    trace = session.end_profiling()

    events = json.loads(trace.read_text())
    assert trace.parent == tmp_path and trace.name.startswith("trace")
    assert any(e.get("name") == "model_run" for e in events)


def test_end_profiling_without_profile_is_refused(identity_classifier: Path) -> None:
    with pytest.raises(InputError, match="not started with profile="):
        Session(identity_classifier).end_profiling()
