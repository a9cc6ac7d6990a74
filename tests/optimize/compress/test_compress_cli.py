"""The compression commands end to end: the real CLI in a subprocess, on a tiny checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

Cli = Callable[..., CompletedProcess[str]]

pytestmark = pytest.mark.slow


def _json(proc: CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_prune_writes_a_loadable_smaller_checkpoint(
    cli: Cli, compress_ckpt: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.pt"
    d = _json(
        cli(
            "prune",
            str(compress_ckpt),
            "--ratio",
            "0.5",
            "--out",
            str(out),
            "--finetune-epochs",
            "1",
            "--steps",
            "2",
            "--importance",
            "l1",
            "--samples",
            "300",
            "--json",
        )
    )
    assert d["macs_after"] < 0.4 * d["macs_before"]
    assert [h["step"] for h in d["history"]] == [1, 2]
    from edgeloop.optimize import load_model

    model, meta = load_model(out)
    assert model.features[0][0].out_channels == 4
    assert meta["extra"]["pruning_history"]


def test_cli_prune_bad_ratio_is_one_line_and_exit_10(
    cli: Cli, compress_ckpt: Path, tmp_path: Path
) -> None:
    proc = cli("prune", str(compress_ckpt), "--ratio", "1.5", "--out", str(tmp_path / "x.pt"))
    assert proc.returncode == 10
    assert "ratio must be in (0, 1)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.pt").exists()


def test_cli_prune_unknown_protect_exit_13(cli: Cli, compress_ckpt: Path, tmp_path: Path) -> None:
    proc = cli(
        "prune",
        str(compress_ckpt),
        "--ratio",
        "0.5",
        "--out",
        str(tmp_path / "x.pt"),
        "--protect",
        "no.such.layer",
        "--finetune-epochs",
        "0",
    )
    assert proc.returncode == 13
    assert "no layer named 'no.such.layer'" in proc.stderr


def test_cli_distill_zoo_student(cli: Cli, compress_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.pt"
    d = _json(
        cli(
            "distill",
            "--teacher",
            str(compress_ckpt),
            "--student",
            "cnn",
            "--width",
            "4",
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--samples",
            "300",
            "--augment",
            "shift:1",
            "--json",
        )
    )
    assert d["student_macs"] < 0.5 * d["teacher_macs"]
    assert d["student_kwargs"]["width"] == 4
    assert d["augment"] == "shift:1"
    from edgeloop.zoo import load_checkpoint

    model, meta = load_checkpoint(out)  # a plain zoo checkpoint
    assert meta["arch_kwargs"]["width"] == 4


def test_cli_distill_mismatched_student_refused(
    cli: Cli, compress_ckpt: Path, tmp_path: Path
) -> None:
    # the teacher reads 1x8x8 digits; on the 3x32x32 shapes data it cannot even run:
    # refused before any training, naming where it failed
    proc = cli(
        "distill",
        "--teacher",
        str(compress_ckpt),
        "--student",
        "cnn",
        "--dataset",
        "shapes",
        "--out",
        str(tmp_path / "s.pt"),
        "--epochs",
        "50",
    )
    assert proc.returncode == 31  # PassError
    assert "teacher" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.pt").exists()


def test_cli_distill_with_unlabelled_inputs_from_a_file(
    cli: Cli, compress_ckpt: Path, tmp_path: Path
) -> None:
    import numpy as np

    from edgeloop.data import load_dataset

    extra = load_dataset("digits", "test").x[:150]
    np.savez(tmp_path / "unlabelled.npz", x=extra)  # inputs only: no labels in the file
    args = ["distill", "--teacher", str(compress_ckpt), "--student", "cnn", "--width", "4"]
    args += ["--out", str(tmp_path / "s.pt"), "--epochs", "1", "--samples", "100", "--json"]
    d = _json(cli(*args, "--unlabeled", str(tmp_path / "unlabelled.npz")))
    assert d["labelled_samples"] == 100 and d["unlabeled_samples"] == 150
    bad = np.zeros((4, 3, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "bad.npz", x=bad)
    proc = cli(*args[:-1], "--out", str(tmp_path / "t.pt"), "--unlabeled", "bad.npz")
    assert proc.returncode == 10, proc.stderr
    assert "(3, 8, 8)" in proc.stderr and "(1, 8, 8)" in proc.stderr
    assert not (tmp_path / "t.pt").exists()


def test_cli_sparsify_shows_accuracy_before_and_warns_loudly(
    cli: Cli, compress_ckpt: Path, tmp_path: Path
) -> None:
    args = ["sparsify", str(compress_ckpt), "--sparsity", "0.97", "--finetune-epochs", "0"]

    table = cli(*args, "--out", str(tmp_path / "a.pt"))
    as_json = cli(*args, "--out", str(tmp_path / "b.pt"), "--json")

    assert table.returncode == 0, table.stderr
    d = _json(as_json)
    assert d["within_budget"] is False and d["accuracy_drop"] > 0.01
    row = next(line for line in table.stdout.splitlines() if "val accuracy" in line)
    assert f"{100 * d['accuracy_before']:.2f}%" in row  # was "-"
    for proc in (table, as_json):
        assert "WARNING: val accuracy fell" in proc.stderr
    assert d["warnings"][0].startswith("val accuracy fell")


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("prune", ["--ratio", "0.9", "--finetune-epochs", "0", "--out", "p.pt"]),
        ("qat", ["--epochs", "1", "--lr", "5", "--out", "q.onnx"]),
        ("binarize", ["--epochs", "1", "--lr", "5", "--all-layers", "--out", "b.npz"]),
    ],
)
def test_cli_prune_qat_binarize_warn_loudly_beyond_max_drop(
    cli: Cli, compress_ckpt: Path, command: str, args: list[str]
) -> None:
    proc = cli(
        command, str(compress_ckpt), *args, "--samples", "300", "--max-drop", "0.01", "--json"
    )

    d = _json(proc)
    assert d["within_budget"] is False and d["max_drop"] == 0.01
    assert d["accuracy_drop"] == pytest.approx(d["accuracy_before"] - d["accuracy_after"])
    assert "WARNING: val accuracy fell" in proc.stderr
    assert d["warnings"][0].startswith("val accuracy fell")


def test_cli_sparsify_qat_binarize(cli: Cli, compress_ckpt: Path, tmp_path: Path) -> None:
    d = _json(
        cli(
            "sparsify",
            str(compress_ckpt),
            "--sparsity",
            "0.7",
            "--out",
            str(tmp_path / "sp.pt"),
            "--finetune-epochs",
            "0",
            "--json",
        )
    )
    assert d["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert d["onnx_bytes_after"]["zlib"] < d["onnx_bytes_before"]["zlib"]
    d = _json(
        cli(
            "qat",
            str(compress_ckpt),
            "--out",
            str(tmp_path / "q.onnx"),
            "--epochs",
            "1",
            "--samples",
            "300",
            "--json",
        )
    )
    assert (tmp_path / "q.onnx").stat().st_size == d["bytes"]
    d = _json(
        cli(
            "binarize",
            str(compress_ckpt),
            "--out",
            str(tmp_path / "b.npz"),
            "--epochs",
            "1",
            "--samples",
            "300",
            "--onnx",
            str(tmp_path / "b.onnx"),
            "--json",
        )
    )
    assert d["packed_bytes"] == (tmp_path / "b.npz").stat().st_size
    assert d["packed_bytes"] < d["fp32_bytes"]
    assert (tmp_path / "b.onnx").exists()
