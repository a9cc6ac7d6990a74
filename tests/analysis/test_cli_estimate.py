"""``edgeloop estimate`` through the real CLI: the table, --json, a saved profile, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeloop.artifacts import DeviceProfile

Cli = Callable[..., CompletedProcess[str]]


def _write_model(path: Path) -> None:
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
            helper.make_node("Flatten", ["p"], ["f"], name="flat"),
            helper.make_node("MatMul", ["f", "G"], ["y"], name="fc"),
        ],
        "g",
        [helper.make_tensor_value_info("x", f, ["N", 3, "H", "H"])],
        [helper.make_tensor_value_info("y", f, ["N", 4])],
        [
            numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "W"),
            numpy_helper.from_array(np.ones((8, 4), np.float32), "G"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_estimate_prints_the_kernels_and_the_totals(cli: Cli, tmp_path: Path) -> None:
    _write_model(tmp_path / "m.onnx")
    r = cli("estimate", "m.onnx", "--target", "rpi4", "--shape", "x=1,3,16,16")
    assert r.returncode == 0, r.stderr
    for text in ("Conv+Relu", "conv", "latency", "peak memory", "energy per inference", "mJ"):
        assert text in r.stdout, text
    assert "derived from peak GOPS" in r.stdout


def test_estimate_json_on_a_saved_profile_without_power(cli: Cli, tmp_path: Path) -> None:
    _write_model(tmp_path / "m.onnx")
    DeviceProfile(
        name="box",
        source="measured",
        arch="x86_64",
        cpu_model="test",
        fp32_gops=50.0,
        int8_gops=100.0,
        mem_bandwidth_gbps=10.0,
        kernels={"fp32_conv@256x27x8": 20.0, "fp32_gemm@1x8x4": 1.0, "op_overhead_us": 1.0},
    ).save(tmp_path / "box.json")

    r = cli("estimate", "m.onnx", "-t", "box.json", "--shape", "x=1,3,16,16", "--json")

    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["target"] == "box" and d["kernel_source"] == "measured"
    assert d["energy_mj"] is None
    conv = d["per_op"][0]
    assert conv["op_type"] == "Conv+Relu" and conv["macs"] == 256 * 27 * 8
    assert conv["latency_ms"] == pytest.approx(2 * 256 * 27 * 8 / 20e9 * 1e3)
    parts = d["resident_weight_bytes"] + d["activation_bytes"] + d["runtime_bytes"]
    assert abs(d["peak_memory_bytes"] - parts) <= 2
    assert d["resident_weight_bytes"] > d["weight_bytes"] == (8 * 27 + 8 * 4) * 4
    table = cli("estimate", "m.onnx", "-t", "box.json", "--shape", "x=1,3,16,16")
    assert "unknown" in table.stdout  # the energy line


def test_estimate_refuses_bad_input_in_one_line(cli: Cli, tmp_path: Path) -> None:
    _write_model(tmp_path / "m.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    cases = {
        ("m.onnx", "--target", "nosuch"): "unknown target 'nosuch'",
        ("m.onnx", "--target", "rpi4", "--precision", "int3"): "precision 'int3'",
        ("m.onnx", "--target", "rpi4", "--shape", "x=0"): "--shape 'x=0'",
        ("junk.onnx", "--target", "rpi4"): "not an ONNX model",
        ("absent.onnx", "--target", "rpi4"): "absent.onnx",
    }
    for args, fragment in cases.items():
        r = cli("estimate", *args)
        assert r.returncode != 0, args
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], (args, r.stderr)
        assert not r.stdout.strip(), args
