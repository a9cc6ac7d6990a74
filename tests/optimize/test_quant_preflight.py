"""Int8 preflight verdicts by ISA, and the unfused Q/DQ count after quantizing."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from edgeloop.artifacts import DeviceProfile
from edgeloop.optimize import optimize, preflight


def _profile(arch: str, *isa: str) -> DeviceProfile:
    return DeviceProfile(name=f"{arch}-test", source="builtin", arch=arch, cpu_model="x", isa=isa)


@pytest.mark.parametrize(
    ("profile", "verdict", "activation", "reduce_range"),
    [
        (_profile("x86_64", "avx2", "avx512f", "avx512_vnni"), "faster", "QUInt8", False),
        (_profile("x86_64", "avx2", "fma"), "likely faster", "QUInt8", True),
        (_profile("x86_64", "sse4_2"), "unlikely faster", "QUInt8", True),
        (_profile("aarch64", "neon", "asimd", "asimddp"), "faster", "QInt8", False),
        (_profile("aarch64", "neon", "asimd"), "unlikely faster", "QInt8", False),
    ],
)
def test_verdict_and_format_follow_the_isa(
    quant_conv: Path, profile: DeviceProfile, verdict: str, activation: str, reduce_range: bool
) -> None:
    report = preflight(onnx.load(str(quant_conv)), profile)
    assert report["int8_verdict"] == verdict
    assert report["activation_type"] == activation
    assert report["reduce_range"] is reduce_range
    assert report["format"] == "QDQ"


def test_graph_without_heavy_ops_gains_nothing() -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    report = preflight(onnx.helper.make_model(graph), _profile("x86_64", "avx512_vnni"))
    assert report["int8_verdict"] == "no gain"


def test_target_without_vnni_gets_reduce_range_and_the_runtime_fusion_count(
    quant_conv: Path, quant_conv_npz: Path, tmp_path: Path
) -> None:
    optimize(
        quant_conv,
        "int8",
        quant_conv_npz,
        out_dir=tmp_path / "o",
        target=_profile("x86_64", "avx2", "fma"),
    )
    details = json.loads((tmp_path / "o" / "report.json").read_text())["steps"][-1]["details"]
    assert details["reduce_range"] is True and details["preflight"]["target"] == "x86_64-test"
    fusion = details["runtime_fusion"]
    assert fusion["qdq_nodes_before"] > fusion["qdq_nodes_left"]
    assert fusion["integer_ops"].get("QLinearConv", 0) == 2
    assert fusion["unfused"] == fusion["qdq_nodes_left"] - fusion["at_boundaries"]


@pytest.mark.parametrize(
    ("target", "verdict", "activation"),
    [
        ("rpi4", "unlikely faster", "QInt8"),
        ("rpi5", "faster", "QInt8"),
        ("intel-n100", "faster", "QUInt8"),
    ],
)
def test_builtin_targets_by_name(
    target: str,
    verdict: str,
    activation: str,
    quant_conv: Path,
    quant_conv_npz: Path,
    tmp_path: Path,
) -> None:
    optimize(
        quant_conv, "int8", quant_conv_npz, out_dir=tmp_path / "o", target=target, eval_samples=8
    )
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    pre = report["steps"][-1]["details"]["preflight"]
    assert (pre["target"], pre["int8_verdict"], pre["activation_type"]) == (
        target,
        verdict,
        activation,
    )
    flagged = any("int8 preflight" in w for w in report["steps"][-1]["warnings"])
    assert flagged == (verdict == "unlikely faster")
