"""``edgeloop optimize`` end to end in a subprocess, as a user runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import onnx
import pytest

Cli = Callable[..., CompletedProcess[str]]


@pytest.mark.slow
def test_int8_json_report_and_files(
    cli: Cli, quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    r = cli(
        "optimize",
        quant_conv.name,
        "--recipe",
        "int8",
        "--data",
        quant_conv_npz.name,
        "--out",
        "o",
        "--max-drop",
        "0.05",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [s["step"] for s in report["steps"]] == ["original", "preprocess", "quantize"]
    assert report["budget"]["met"] is True
    for name in ("model.onnx", "model_card.json", "report.json", "report.html", "report.png"):
        assert (tmp_path / "o" / name).exists()


@pytest.mark.slow
def test_missed_budget_exits_32_with_one_line_saying_by_how_much(
    cli: Cli, quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    r = cli(
        "optimize",
        quant_conv.name,
        "--recipe",
        "int8",
        "--data",
        quant_conv_npz.name,
        "--out",
        "o",
        "--min-sqnr",
        "200",
    )
    assert r.returncode == 32
    assert "Traceback" not in r.stderr
    assert "missed by" in r.stderr and "budget not met" in r.stderr
    assert (tmp_path / "o" / "model.onnx").exists()
    assert "quantize" in r.stdout  # the summary table of what was found is still shown


def test_calibration_data_for_another_model_names_the_input(
    cli: Cli, quant_tokens: Path, tmp_path: Path
) -> None:
    np.savez(tmp_path / "bad.npz", input_ids=np.zeros((4, 6), np.int64))
    r = cli("optimize", quant_tokens.name, "--recipe", "int8", "--data", "bad.npz", "--out", "o")
    assert r.returncode == 22
    assert "attention_mask" in r.stderr and "Traceback" not in r.stderr


def test_list_recipes(cli: Cli) -> None:
    r = cli("optimize", "--list-recipes", "--json")
    assert r.returncode == 0, r.stderr
    recipes = json.loads(r.stdout)
    assert {"int8", "int8-dynamic", "int4", "fp16", "fused"} <= set(recipes)
    assert [p["name"] for p in recipes["int8"]["passes"]] == ["preprocess", "quantize"]


def test_recipe_file_and_unknown_recipe(cli: Cli, quant_conv: Path, tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("name: mine\npasses:\n  - fuse: {level: basic}\n")
    ok = cli("optimize", quant_conv.name, "--recipe", "r.yaml", "--out", "o")
    assert ok.returncode == 0, ok.stderr
    card = json.loads((tmp_path / "o" / "model_card.json").read_text())
    assert card["recipe"]["name"] == "mine"
    bad = cli("optimize", quant_conv.name, "--recipe", "int3", "--out", "o2")
    assert bad.returncode == 13 and "unknown recipe 'int3'" in bad.stderr


@pytest.mark.slow
def test_recipe_auto_keeps_the_faster_model_and_says_so(
    cli: Cli, quant_tokens: Path, quant_tokens_npz: Path, tmp_path: Path
) -> None:
    # act: auto with data is static int8, then the faster of the result and the original
    r = cli(
        "optimize",
        quant_tokens.name,
        "--recipe",
        "auto",
        "--data",
        quant_tokens_npz.name,
        "--out",
        "o",
    )
    # assert: whichever way the interleaved timing went, the written model and the words agree
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    steps = [s["step"] for s in report["steps"]]
    assert steps[:3] == ["original", "preprocess", "quantize"]
    quant = report["steps"][2]
    ops = {n.op_type for n in onnx.load(str(tmp_path / "o" / "model.onnx")).graph.node}
    if quant["speedup"] < 0.97:
        assert steps[-1] == "kept original"
        assert "QuantizeLinear" not in ops
        assert "slower than the original" in r.stdout and "kept the original" in r.stdout
    else:
        assert steps[-1] == "quantize"
        assert "QuantizeLinear" in ops
        assert "kept the original" not in r.stdout
