"""Session: loading, provider choice, input validation, integrity checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeloop.artifacts import sha256_file
from edgeloop.errors import (
    FileError,
    InputError,
    IntegrityError,
    ModelFormatError,
    ModelInputError,
    UnknownNameError,
)
from edgeloop.runtime import PREFERENCE, Session, resolve_providers


def test_specs_outputs_and_hash(two_input_model: Path) -> None:
    s = Session(two_input_model, threads=1)
    assert [(i.name, i.dtype, i.shape) for i in s.inputs] == [
        ("x", "float32", ("batch", 8)),
        ("ids", "int64", ("batch", "seq")),
    ]
    assert s.output_names == ["score"]
    assert s.providers[-1] == "CPUExecutionProvider"
    assert s.model_sha256 == sha256_file(two_input_model)
    out = s.run({"x": np.zeros((3, 8), np.float32), "ids": np.zeros((3, 4), np.int64)})
    assert out["score"].shape == (3, 2)


def test_single_array_for_a_single_input_model(identity_classifier: Path) -> None:
    x = np.array([[0.1, 2.0, -1.0]], dtype=np.float32)
    out = Session(identity_classifier).run(x)
    np.testing.assert_allclose(out["logits"], x)


def test_model_bytes_load_too(identity_classifier: Path) -> None:
    s = Session(identity_classifier.read_bytes())
    assert s.path is None and s.model_sha256 == sha256_file(identity_classifier)


def test_same_kind_dtypes_are_converted(two_input_model: Path) -> None:
    s = Session(two_input_model)
    out = s.run({"x": np.zeros((1, 8), np.float64), "ids": np.zeros((1, 4), np.int32)})
    assert out["score"].dtype == np.float32


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        (
            {"x": np.zeros((1, 8), np.float32)},
            r"missing input 'ids' \(int64 \[batch, seq\]\); given: x",
        ),
        (
            {"x": np.zeros((1, 8), np.float32), "ids": np.zeros((1, 4), np.float32)},
            r"input 'ids' expects int64, got float32",
        ),
        (
            {"x": np.zeros((1, 7), np.float32), "ids": np.zeros((1, 4), np.int64)},
            r"input 'x' expects shape \[batch, 8\], got \[1, 7\] \(axis 1: expected 8, got 7\)",
        ),
        (
            {"x": np.zeros(8, np.float32), "ids": np.zeros((1, 4), np.int64)},
            r"input 'x' expects rank 2 \[batch, 8\], got rank 1 \[8\]",
        ),
        (
            {"x": np.zeros((1, 8)), "ids": np.zeros((1, 4), np.int64), "mask": 1},
            r"unknown input 'mask'; the model's inputs are: x, ids",
        ),
        (np.zeros((1, 8), np.float32), r"the model has 2 inputs \(x, ids\)"),
    ],
)
def test_bad_feeds_name_the_input_and_expectation(
    two_input_model: Path, feeds: object, message: str
) -> None:
    with pytest.raises(ModelInputError, match=message):
        Session(two_input_model).run(feeds)


def test_missing_directory_and_non_onnx_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="does not exist"):
        Session(tmp_path / "nope.onnx")
    with pytest.raises(FileError, match="is a directory"):
        Session(tmp_path)
    text = tmp_path / "readme.onnx"
    text.write_text("not a model")
    with pytest.raises(ModelFormatError, match="readme.onnx' is not a valid ONNX model"):
        Session(text)


def test_bad_options_are_refused(identity_classifier: Path) -> None:
    with pytest.raises(InputError, match="graph_optimization 'max'"):
        Session(identity_classifier, graph_optimization="max")
    with pytest.raises(UnknownNameError, match="execution provider 'warp-drive' is not available"):
        Session(identity_classifier, providers=["warp-drive"])


def test_provider_preference_and_short_names() -> None:
    available = ["AzureExecutionProvider", "CPUExecutionProvider", "CUDAExecutionProvider"]
    assert resolve_providers(None, available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["cuda"], available) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert resolve_providers(["cpu"], available) == ["CPUExecutionProvider"]
    assert PREFERENCE[-1] == "CPUExecutionProvider"
    assert "AzureExecutionProvider" not in PREFERENCE


def test_integrity_check_runs_before_serving_and_at_most_per_interval(
    identity_classifier: Path,
) -> None:
    calls: list[int] = []
    s = Session(identity_classifier, integrity_check=lambda: calls.append(1))
    assert calls == []  # nothing served yet
    x = np.zeros((1, 3), np.float32)
    s.run(x)
    s.run(x)
    assert calls == [1]
    s.check_integrity(force=True)
    assert len(calls) == 2


def test_integrity_failure_refuses_to_serve(identity_classifier: Path) -> None:
    def tampered() -> None:
        raise ValueError("sha256 differs")

    s = Session(identity_classifier, integrity_check=tampered, integrity_interval_s=0)
    with pytest.raises(IntegrityError, match="integrity check failed: sha256 differs"):
        s.run(np.zeros((1, 3), np.float32))


def test_an_accelerator_that_fails_to_start_falls_back_to_cpu(
    identity_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    real = ort.InferenceSession

    def fake_session(source: object, sess_options: object, providers: list[str]) -> object:
        if "CUDAExecutionProvider" in providers:
            raise RuntimeError("CUDA driver version is insufficient")
        return real(source, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "InferenceSession", fake_session)
    s = Session(identity_classifier)
    assert s.providers == ["CPUExecutionProvider"]
    assert s.provider_fallback == (
        "CUDAExecutionProvider failed: CUDA driver version is insufficient"
    )
    assert s.run(np.ones((1, 3), np.float32))["logits"].shape == (1, 3)
