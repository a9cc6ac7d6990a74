"""Budgets are scored on samples held out from calibration: one dataset given is split
deterministically into disjoint parts, and the card records both hashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeloop.optimize import optimize
from edgeloop.optimize._data import load_model_data
from edgeloop.optimize._model import input_specs


def _rows(a: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in a}


def test_one_array_set_splits_into_disjoint_deterministic_parts(quant_conv: Path) -> None:
    # prepare: 40 distinct samples
    specs = input_specs(onnx.load(str(quant_conv)))
    x = np.random.default_rng(3).standard_normal((40, 3, 8, 8)).astype(np.float32)
    # act
    a = load_model_data({"x": x}, specs, eval_samples=512, calib_samples=256)
    b = load_model_data({"x": x}, specs, eval_samples=512, calib_samples=256)
    # assert
    assert len(a.calib["x"]) == 20 and len(a.inputs["x"]) == 20
    assert not _rows(a.calib["x"]) & _rows(a.inputs["x"])
    assert _rows(a.calib["x"]) | _rows(a.inputs["x"]) == _rows(x)
    assert a.sha256 != a.calib_sha256
    assert (a.sha256, a.calib_sha256) == (b.sha256, b.calib_sha256)


def test_npz_labels_follow_their_samples(quant_conv: Path, tmp_path: Path) -> None:
    # prepare: the label of each sample is encoded in the sample itself
    specs = input_specs(onnx.load(str(quant_conv)))
    x = np.zeros((30, 3, 8, 8), np.float32)
    x[:, 0, 0, 0] = np.arange(30)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.arange(30))
    # act
    md = load_model_data(path, specs, eval_samples=8, calib_samples=10)
    # assert
    assert len(md.calib["x"]) == 10 and len(md.inputs["x"]) == 8
    assert md.labels is not None
    assert np.array_equal(md.inputs["x"][:, 0, 0, 0].astype(int), md.labels)


@pytest.mark.slow
def test_static_int8_card_has_two_different_hashes(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    # act
    card = optimize(quant_conv, "int8", quant_conv_npz, out_dir=tmp_path / "out", min_cosine=0.5)
    # assert
    roles = {r.role: r.sha256 for r in card.lineage}
    assert roles["calibration_data"] != roles["dataset"]
