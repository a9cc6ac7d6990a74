"""``edgeloop run``, ``bench`` and ``evaluate`` through the real CLI, bad input included."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest

from edgeloop.runtime import Session

Cli = Callable[..., CompletedProcess[str]]


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_run_writes_one_array_per_output(cli: Cli, two_input_model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    ids = rng.integers(0, 5, (6, 4)).astype(np.int64)
    data = _npz(tmp_path / "in.npz", x=x, ids=ids)
    r = cli("run", two_input_model, "--input", data, "--out", "out/preds.npz", "--batch-size", "4")
    assert r.returncode == 0, r.stderr
    assert "wrote out/preds.npz: score (6, 2) float32" in r.stdout.replace("\n", " ")
    with np.load(tmp_path / "out" / "preds.npz") as z:
        assert z.files == ["score"]
        expected = Session(two_input_model).run({"x": x, "ids": ids})["score"]
        np.testing.assert_allclose(z["score"], expected, rtol=1e-6)


def test_run_takes_x_for_a_single_input_model(
    cli: Cli, identity_classifier: Path, tmp_path: Path
) -> None:
    x = np.array([[1, 2, 3], [3, 2, 1]], dtype=np.float32)
    data = _npz(tmp_path / "in.npz", x=x, y=np.array([2, 0]))
    assert cli("run", identity_classifier, "-i", data, "-o", "p.npz").returncode == 0
    with np.load(tmp_path / "p.npz") as z:
        np.testing.assert_allclose(z["logits"], x)


@pytest.mark.parametrize(
    ("arrays", "code", "message"),
    [
        ({"x": np.zeros((2, 8), np.float32)}, 22, "has no array for input 'ids'; it has: x"),
        (
            {"x": np.zeros((2, 8), np.float32), "ids": np.zeros((2, 4), np.float32)},
            22,
            "input 'ids' expects int64, got float32",
        ),
        (
            {"x": np.zeros((2, 5), np.float32), "ids": np.zeros((2, 4), np.int64)},
            22,
            "input 'x' expects shape [batch, 8], got [2, 5] (axis 1: expected 8, got 5)",
        ),
    ],
)
def test_run_refuses_bad_inputs_and_writes_nothing(
    cli: Cli,
    two_input_model: Path,
    tmp_path: Path,
    arrays: dict[str, np.ndarray],
    code: int,
    message: str,
) -> None:
    data = _npz(tmp_path / "bad.npz", **arrays)
    r = cli("run", two_input_model, "--input", data, "--out", "preds.npz")
    assert r.returncode == code
    assert message in r.stderr.replace("\n", " ")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "preds.npz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".preds")] == []


def test_run_refuses_bad_model_files(cli: Cli, identity_classifier: Path, tmp_path: Path) -> None:
    data = _npz(tmp_path / "in.npz", x=np.zeros((1, 3), np.float32))
    text = tmp_path / "notes.onnx"
    text.write_text("just text\n")
    cases = [
        (tmp_path / "missing.onnx", 11, "missing.onnx' does not exist"),
        (tmp_path, 11, "is a directory, expected an ONNX file"),
        (text, 21, "notes.onnx' is not a valid ONNX model"),
    ]
    for model, code, message in cases:
        r = cli("run", model, "--input", data, "--out", "p.npz")
        assert (r.returncode, message in r.stderr) == (code, True), r.stderr
    r = cli("run", identity_classifier, "--input", tmp_path / "none.npz", "--out", "p.npz")
    assert r.returncode == 11 and "none.npz' does not exist" in r.stderr
    r = cli("run", identity_classifier, "--input", text, "--out", "p.npz")
    assert r.returncode == 11 and "is not a readable .npz file" in r.stderr
    assert not (tmp_path / "p.npz").exists()


def test_bench_json_with_labelled_data(cli: Cli, identity_classifier: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    data = _npz(tmp_path / "d.npz", x=x, y=np.argmax(x, axis=1))
    r = cli("bench", identity_classifier, "--data", data, "--iterations", "10", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["iterations"] == 10 and out["batch"] == 1
    if importlib.util.find_spec("onnx") is not None:  # the graph reader (build layer)
        assert out["macs"] == 9 and out["params"] == 12
    else:  # a device: no graph reader, the figures are unknown rather than guessed
        assert out["macs"] is None and out["params"] is None
    assert out["metrics"]["accuracy"] == 1.0
    assert set(out["latency_ms"]) >= {"p50", "p90", "p99", "mean"}


def test_bench_compare_prints_a_table_with_ratios(
    cli: Cli, identity_classifier: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(identity_classifier.read_bytes())
    r = cli("bench", identity_classifier, "--compare", other, "--iterations", "5", "--batch", "2")
    assert r.returncode == 0, r.stderr
    for text in ("latency p50 (ms)", "latency p99 (ms)", "peak RSS (MB)", "B / A", "1.00x"):
        assert text in r.stdout


def test_bench_with_a_shape_for_a_dynamic_input(cli: Cli, two_input_model: Path) -> None:
    r = cli("bench", two_input_model, "--shape", "ids=1,7", "--iterations", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["input_shapes"] == {"x": [1, 8], "ids": [1, 7]}
    r = cli("bench", two_input_model, "--shape", "ids", "--iterations", "3")
    assert r.returncode == 10 and "expected NAME=D1,D2" in r.stderr


def test_evaluate_a_labelled_file(cli: Cli, identity_classifier: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((30, 3)).astype(np.float32)
    data = _npz(tmp_path / "d.npz", x=x, y=np.argmax(x, axis=1))
    r = cli("evaluate", identity_classifier, "--data", data, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metrics"] == {"samples": 30.0, "accuracy": 1.0, "macro_f1": 1.0}
    table = cli("evaluate", identity_classifier, "--data", data)
    assert "accuracy" in table.stdout and "1.0000" in table.stdout


def test_evaluate_dataset_file_scores_all_of_it_and_says_so(
    cli: Cli, identity_classifier: Path, tmp_path: Path
) -> None:
    x = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32)
    data = _npz(tmp_path / "d.npz", x=x, y=np.argmax(x, axis=1))

    r = cli("evaluate", identity_classifier, "--dataset", data, "--json")
    table = cli("evaluate", identity_classifier, "--dataset", data)

    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metrics"]["samples"] == 50.0  # was 10: the file's 20 % "test split"
    assert out["split"] == "all"
    assert "the whole file: 50 samples" in table.stdout


def test_evaluate_needs_known_labelled_data(cli: Cli, identity_classifier: Path) -> None:
    r = cli("evaluate", identity_classifier)
    assert r.returncode == 10 and "give --dataset NAME" in r.stderr
    r = cli("evaluate", identity_classifier, "--dataset", "no-such-set")
    assert r.returncode == 13 and "unknown dataset 'no-such-set'" in r.stderr
