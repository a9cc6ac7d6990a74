"""Pre-processing fallbacks run in the issue's order, and third-party temp files stay out of the
user's working directory whichever mode fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeloop.optimize._prepare import PRE_PROCESS_MODES, run_pre_process


def conv_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_modes_are_ordered_optimisation_before_dropping_it() -> None:
    # the issue: optimisation with plain shape inference must come before no optimisation
    kws = [kw for _, kw in PRE_PROCESS_MODES]
    assert kws[0] == {}
    assert kws[1] == {"skip_symbolic_shape": True}
    assert kws[2] == {"skip_optimization": True}
    assert kws[3] == {"skip_optimization": True, "skip_symbolic_shape": True}


def _fake(calls: list[dict[str, Any]], fail_when: Any) -> Any:
    def quant_pre_process(src: str, dest: str, **kw: Any) -> None:
        calls.append({k: kw.get(k, False) for k in ("skip_symbolic_shape", "skip_optimization")})
        # what ORT's symbolic shape inference does when it gives up: a temp file in the cwd
        Path("sym_shape_infer_temp.onnx").write_bytes(b"x")
        if fail_when(kw):
            raise AssertionError("Incomplete symbolic shape inference")
        Path(dest).write_bytes(Path(src).read_bytes())

    return quant_pre_process


@pytest.mark.parametrize(
    ("fail_when", "expected_mode", "tries"),
    [
        (lambda kw: not kw.get("skip_symbolic_shape"), 1, 2),
        (lambda kw: not kw.get("skip_optimization"), 2, 3),
        (lambda kw: True, None, 4),
    ],
)
def test_first_mode_that_holds_is_used_and_the_cwd_stays_clean(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fail_when: Any,
    expected_mode: int | None,
    tries: int,
) -> None:
    # prepare
    import onnxruntime.quantization.shape_inference as si

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(si, "quant_pre_process", _fake(calls, fail_when))
    src = tmp_path / "m.onnx"
    onnx.save(conv_model(), str(src))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # act
    mode, failures = run_pre_process(src, tmp_path / "out.onnx", external=False)
    # assert
    assert len(calls) == tries
    assert len(failures) == tries - (0 if expected_mode is None else 1)
    assert mode == (None if expected_mode is None else PRE_PROCESS_MODES[expected_mode][0])
    assert all("Incomplete symbolic shape inference" in f for f in failures)
    assert list(cwd.iterdir()) == []


def test_skip_optimization_tries_only_the_modes_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prepare
    import onnxruntime.quantization.shape_inference as si

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(si, "quant_pre_process", _fake(calls, lambda kw: False))
    src = tmp_path / "m.onnx"
    onnx.save(conv_model(), str(src))
    # act
    mode, _ = run_pre_process(src, tmp_path / "out.onnx", external=False, allow_optimization=False)
    # assert
    assert calls == [{"skip_symbolic_shape": False, "skip_optimization": True}]
    assert mode == PRE_PROCESS_MODES[2][0]
