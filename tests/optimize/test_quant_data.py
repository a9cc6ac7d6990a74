"""Calibration and evaluation data: matching to model inputs, clear errors, streaming reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeloop.errors import FileError, ModelInputError
from edgeloop.optimize import StreamingReader, optimize
from edgeloop.optimize._data import load_model_data
from edgeloop.optimize._model import input_specs, load_onnx


def _specs(path: Path):  # type: ignore[no-untyped-def]
    return input_specs(load_onnx(path))


def test_missing_input_array_names_the_input(quant_tokens: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, input_ids=np.zeros((4, 6), np.int64))
    with pytest.raises(ModelInputError, match=r"no array for model input attention_mask \(int64"):
        optimize(quant_tokens, "int8", data, out_dir=tmp_path / "o")


def test_float_array_for_an_int64_input_is_refused(quant_tokens: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    np.savez(
        data,
        input_ids=np.zeros((4, 6), np.float32),
        attention_mask=np.ones((4, 6), np.int64),
    )
    with pytest.raises(ModelInputError, match=r"input_ids .* has dtype float32; expected int64"):
        optimize(quant_tokens, "int8", data, out_dir=tmp_path / "o")


def test_wrong_shape_names_input_dimension_and_expectation(
    quant_conv: Path, tmp_path: Path
) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 3, 9, 8), np.float32))
    with pytest.raises(
        ModelInputError, match=r"x \(float32 \[\?, 3, 8, 8\]\).*dimension 2 should be 8"
    ):
        optimize(quant_conv, "int8", data, out_dir=tmp_path / "o")


def test_array_matching_no_input_is_named(quant_tokens: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    ids = np.zeros((4, 6), np.int64)
    np.savez(data, input_ids=ids, attention_mask=ids, token_type_ids=ids)
    with pytest.raises(ModelInputError, match="'token_type_ids' match no model input"):
        optimize(quant_tokens, "int8", data, out_dir=tmp_path / "o")


def test_missing_data_file_is_a_file_error(quant_conv: Path, tmp_path: Path) -> None:
    with pytest.raises(FileError, match="does not exist"):
        optimize(quant_conv, "int8", tmp_path / "nope.npz", out_dir=tmp_path / "o")


def test_labels_ride_along_under_y(quant_conv: Path, quant_conv_npz: Path) -> None:
    md = load_model_data(quant_conv_npz, _specs(quant_conv), eval_samples=10, calib_samples=5)
    assert md.labels is not None and len(md.labels) == 10
    assert len(md.calib["x"]) == 5 and md.task == "classification"


def test_npy_is_memory_mapped_and_sliced_lazily(quant_conv: Path, tmp_path: Path) -> None:
    arr = np.random.default_rng(0).standard_normal((40, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", arr)
    md = load_model_data(tmp_path / "x.npy", _specs(quant_conv), eval_samples=8, calib_samples=4)
    assert isinstance(md.inputs["x"], np.memmap)
    np.testing.assert_array_equal(md.calib["x"], arr[:4])


def test_reader_yields_bounded_batches_and_honours_ranges() -> None:
    arrays = {"a": np.arange(100).reshape(50, 2), "b": np.arange(50)}
    reader = StreamingReader(arrays, batch_size=8, limit=44)
    sizes = []
    while (batch := reader.get_next()) is not None:
        sizes.append(len(batch["a"]))
        assert len(batch["b"]) == len(batch["a"])
    assert sizes == [8, 8, 8, 8, 8, 4] and len(reader) == 6
    reader.set_range(2, 4)
    firsts = [int(b["b"][0]) for b in iter(reader.get_next, None)]
    assert firsts == [16, 24]
    assert reader.stride(most=4) == 3  # the largest divisor of 6 batches up to 4
