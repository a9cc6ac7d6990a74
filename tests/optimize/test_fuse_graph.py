"""The fuse pass: offline ORT optimisation, Conv+BN folding, fusions named, ORT format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeloop.errors import InputError
from edgeloop.optimize import optimize
from edgeloop.optimize._fuse import fusions_applied


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]


def test_fused_preset_folds_batchnorm_and_keeps_outputs(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    optimize(quant_conv, "fused", quant_conv_npz, out_dir=out)
    details = json.loads((out / "report.json").read_text())["steps"][1]["details"]
    assert details["ops_before"]["BatchNormalization"] == 1
    assert "BatchNormalization" not in details["ops_after"]
    assert "Conv+BatchNormalization folded (1)" in details["fusions"]
    assert details["nodes_after"] < details["nodes_before"]
    x = np.load(quant_conv_npz)["x"][:8]
    np.testing.assert_allclose(_run(out / "model.onnx", x), _run(quant_conv, x), atol=1e-4)
    np.testing.assert_allclose(_run(out / "model.ort", x), _run(quant_conv, x), atol=1e-4)


def test_level_all_warns_that_the_file_is_tied_to_this_cpu(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    recipe = {"name": "all", "passes": [{"fuse": {"level": "all"}}]}
    optimize(quant_conv, recipe, quant_conv_npz, out_dir=tmp_path / "o")
    step = json.loads((tmp_path / "o" / "report.json").read_text())["steps"][1]
    assert any("NCHWc" in w for w in step["warnings"])
    assert not (tmp_path / "o" / "model.ort").exists()


def test_unknown_level_is_refused(quant_conv: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fuse level must be one of"):
        optimize(quant_conv, {"passes": [{"fuse": {"level": "max"}}]}, out_dir=tmp_path / "o")


def test_fusions_are_named_from_the_count_changes() -> None:
    before = {"Conv": 3, "BatchNormalization": 3, "Relu": 3, "Identity": 2}
    after = {"Conv": 3, "FusedConv": 2, "Relu": 1}
    assert fusions_applied(before, after) == [
        "Conv+activation (2)",
        "Conv+BatchNormalization folded (3)",
        "Identity removed (2)",
    ]
