"""The cost model: the graph side (fusions, constant folding, QDQ, liveness) on hand-built graphs
whose answers are known by arithmetic, checked against ONNX Runtime's own optimized graph, and
the pricing side on profiles with known kernel figures."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeloop.analysis import activation_peak, estimate, execution_plan
from edgeloop.analysis._estimate import (
    ARENA_FACTOR,
    SESSION_BYTES,
    WEIGHT_RESIDENCY,
    nchwc_block,
)
from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import InputError
from edgeloop.hardware import load_target

F = TensorProto.FLOAT


def _w(name: str, *shape: int, dtype: type = np.float32, value: float = 0.5) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full(shape, value, dtype=dtype), name)


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, int, list[int | str]]],
    outputs: list[tuple[str, int, list[int | str] | None]],
    inits: list[onnx.TensorProto] = (),  # type: ignore[assignment]
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(inits),
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _profile(**kernels: float) -> DeviceProfile:
    return DeviceProfile(
        name="test",
        source="measured",
        arch="x86_64",
        cpu_model="test",
        fp32_gops=100.0,
        int8_gops=400.0,
        mem_bandwidth_gbps=10.0,
        power_w=None,
        kernels=dict(kernels) or None,
        extra={"kernel_threads": 1},
    )


def _cnn() -> onnx.ModelProto:
    """Conv -> BN -> Relu, Conv -> Add(residual) -> Relu, pool, flatten, MatMul + bias."""
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a2"], name="add2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "G"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "gb"], ["y"], name="fc_bias"),
    ]
    inits = [
        _w("W1", 8, 3, 3, 3),
        _w("B1", 8),
        _w("s", 8),
        _w("b", 8),
        _w("m", 8),
        _w("v", 8, value=1.0),
        _w("W2", 8, 8, 3, 3),
        _w("G", 8, 10),
        _w("gb", 10),
    ]
    return _model(nodes, [("x", F, [1, 3, 16, 16])], [("y", F, [1, 10])], inits)


def test_conv_bn_relu_residual_and_matmul_bias_fuse_as_onnx_runtime_fuses_them() -> None:
    plan = execution_plan(_cnn())

    kernels = [(s.name, s.op_type, s.kind) for s in plan.steps]
    assert kernels == [
        ("conv1", "Conv+BatchNormalization+Relu", "conv"),
        ("conv2", "Conv+Add+Relu", "conv"),
        ("pool", "GlobalAveragePool", "pool"),
        ("flat", "Flatten", "view"),
        ("fc", "MatMul+Add", "gemm"),
    ]
    conv1, conv2 = plan.steps[0], plan.steps[1]
    assert conv1.macs == 8 * 16 * 16 * 27
    assert conv2.macs == 8 * 16 * 16 * 72
    # conv2 reads its input and the residual once (the same tensor r1), its weights, writes r2
    assert conv2.inputs == ["r1"]
    assert conv2.weight_bytes == 8 * 8 * 9 * 4
    assert conv2.input_bytes == 8 * 16 * 16 * 4
    assert conv2.output_bytes == 8 * 16 * 16 * 4
    # BN's four vectors and the conv bias are weights of the fused kernel
    assert conv1.weight_bytes == (8 * 27 + 5 * 8) * 4
    assert plan.weight_bytes == (8 * 27 + 5 * 8 + 8 * 72 + 80 + 10) * 4


@pytest.mark.parametrize("build", [_cnn, lambda: _qdq_conv()], ids=["cnn", "qdq"])
def test_the_plan_has_the_kernels_of_onnx_runtimes_optimized_graph(
    tmp_path: Path, build: object
) -> None:
    """ONNX Runtime's own optimized graph (ORT_ENABLE_ALL, as sessions run) has one node per
    step of the plan, once the layout changes it inserts for its blocked (NCHWc) and NHWC
    kernels are set aside."""
    from edgeloop.runtime import save_optimized

    src = tmp_path / "m.onnx"
    onnx.save(build(), src)  # type: ignore[operator]
    save_optimized(src, tmp_path / "opt.onnx", graph_optimization="all")
    ort_nodes = [
        n.op_type
        for n in onnx.load(tmp_path / "opt.onnx").graph.node
        if n.op_type not in ("ReorderInput", "ReorderOutput", "Transpose")
    ]

    plan = execution_plan(src)

    assert len(plan.steps) == len(ort_nodes), (ort_nodes, [s.op_type for s in plan.steps])
    macs_kernels = sum(s.macs > 0 for s in plan.steps)
    assert macs_kernels == sum(
        op in ("Conv", "FusedConv", "QLinearConv", "Gemm", "FusedGemm", "MatMul")
        for op in ort_nodes
    )


def test_matmul_bias_on_a_3d_input_is_not_a_gemm() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["y"], name="bias"),
    ]
    m = _model(nodes, [("x", F, [1, 4, 8])], [("y", F, [1, 4, 6])], [_w("W", 8, 6), _w("b", 6)])
    assert [s.op_type for s in execution_plan(m).steps] == ["MatMul", "Add"]


def test_shape_arithmetic_on_known_shapes_is_folded_into_constants() -> None:
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0, name="gather"),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0, name="concat"),
        helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape"),
        helper.make_node("Relu", ["r"], ["y"], name="relu"),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
    ]
    m = _model(nodes, [("x", F, [2, 3, 4])], [("y", F, [2, 12])], inits)

    plan = execution_plan(m)

    assert [s.name for s in plan.steps] == ["reshape", "relu"]
    assert set(plan.folded) == {"shape", "gather", "unsq", "concat"}
    # the reshape is a view of x: x and y are the only buffers, never more than both
    assert plan.aliases == {"r": "x"}
    assert activation_peak(plan) == 2 * 24 * 4


def test_activation_peak_is_a_liveness_pass_in_topological_order() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r1"], name="a"),
        helper.make_node("Relu", ["r1"], ["r2"], name="b"),
        helper.make_node("Add", ["r1", "r2"], ["y"], name="c"),
    ]
    m = _model(nodes, [("x", F, [1, 1000])], [("y", F, [1, 1000])])
    # x, r1 live at a; x is freed, r1 and r2 at b; r1, r2 and y at c: 3 buffers of 4000 bytes
    assert activation_peak(execution_plan(m)) == 3 * 4000
    wide = [
        helper.make_node("Relu", ["x"], ["r1"], name="a"),
        helper.make_node("Relu", ["r1"], ["r2"], name="b"),
        helper.make_node("Relu", ["r2"], ["y"], name="c"),
    ]
    chain = _model(wide, [("x", F, [1, 1000])], [("y", F, [1, 1000])])
    assert activation_peak(execution_plan(chain)) == 2 * 4000  # never more than two alive


def _qdq_conv() -> onnx.ModelProto:
    """DQ(x) and DQ(int8 weight) -> Conv -> Relu -> Q -> DQ -> output: a QDQ model's block."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="dqx"),
        helper.make_node("DequantizeLinear", ["Wq", "sw"], ["wd"], name="dqw"),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "sy", "zy"], ["yq"], name="qy"),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"], name="dqy"),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "sx"),
        numpy_helper.from_array(np.array(128, np.uint8), "zx"),
        numpy_helper.from_array(np.ones((16, 8, 3, 3), np.int8), "Wq"),
        numpy_helper.from_array(np.array(0.01, np.float32), "sw"),
        numpy_helper.from_array(np.array(0.05, np.float32), "sy"),
        numpy_helper.from_array(np.array(0, np.uint8), "zy"),
    ]
    return _model(nodes, [("x", F, [1, 8, 12, 12])], [("y", F, [1, 16, 12, 12])], inits)


def test_a_qdq_conv_runs_as_one_int8_kernel_with_one_byte_weights() -> None:
    plan = execution_plan(_qdq_conv())

    by_name = {s.name: s for s in plan.steps}
    assert set(by_name) == {"qx", "conv", "dqy"}
    conv = by_name["conv"]
    assert conv.precision == "int8"
    assert conv.op_type == "Conv+DequantizeLinear+DequantizeLinear+Relu+QuantizeLinear"
    assert conv.macs == 16 * 144 * 72
    assert conv.input_bytes == 8 * 144  # uint8 activations
    assert conv.output_bytes == 16 * 144
    # int8 weights, and the scales (fp32) and zero points (uint8) of x, w and y
    assert conv.weight_bytes == 16 * 72 + 3 * 4 + 2


def test_qdq_around_add_and_pooling_runs_on_uint8() -> None:
    """DQ -> Add -> Q and DQ -> GlobalAveragePool -> Q are QLinearAdd and
    QLinearGlobalAveragePool in ONNX Runtime: one uint8 kernel each, their DQ and Q folded."""
    sc = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.array(128, np.uint8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["a"], name="dqa"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["b"], name="dqb"),
        helper.make_node("Add", ["a", "b"], ["c"], name="add"),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"], name="qc"),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"], name="dqc"),
        helper.make_node("GlobalAveragePool", ["cd"], ["p"], name="pool"),
        helper.make_node("QuantizeLinear", ["p", "s", "z"], ["pq"], name="qp"),
        helper.make_node("DequantizeLinear", ["pq", "s", "z"], ["y"], name="dqy"),
    ]
    m = _model(nodes, [("x", F, [1, 8, 4, 4])], [("y", F, [1, 8, 1, 1])], [sc, zp])

    steps = {s.name: s for s in execution_plan(m).steps}

    assert set(steps) == {"qx", "add", "pool", "dqy"}
    add = steps["add"]
    assert add.precision == "int8" and add.kind == "elementwise"
    assert add.input_bytes == 128 and add.output_bytes == 128  # uint8 in and out
    assert steps["pool"].precision == "int8" and steps["pool"].output_bytes == 8


def test_estimate_prices_kernels_from_the_profile_measurements() -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    m = _model(nodes, [("x", F, [64, 256])], [("y", F, [64, 128])], [_w("W", 256, 128)])
    macs = 64 * 256 * 128
    p = _profile(
        **{"fp32_gemm@1x16x16": 1.0, "fp32_gemm@64x256x128": 50.0, "fp32_gemm@512x512x512": 90.0},
        op_overhead_us=2.0,
        run_overhead_us=5.0,
        runtime_bytes=1000.0,
    )

    e = estimate(m, p)

    assert execution_plan(m).steps[0].dims == (64, 256, 128)
    compute_ms = 2 * macs / 50e9 * 1e3  # the measured shape itself
    # a measured kernel's time holds its operator overhead: the run adds only Run()'s
    assert e.latency_ms == pytest.approx(compute_ms + 0.005)
    assert e.per_op[0].latency_ms == pytest.approx(compute_ms)
    assert e.kernel_source == "measured"
    assert e.weight_bytes == 256 * 128 * 4
    # the arena: the liveness peak (x and y) times its growth factor; GEMM weights kept 1.5x
    assert e.activation_bytes == int(ARENA_FACTOR * (64 * 256 + 64 * 128) * 4)
    assert e.resident_weight_bytes == int(WEIGHT_RESIDENCY * 256 * 128 * 4)
    assert e.runtime_bytes == 1000 + SESSION_BYTES
    assert e.peak_memory_bytes == pytest.approx(
        e.resident_weight_bytes + e.activation_bytes + e.runtime_bytes, abs=2
    )
    assert e.energy_mj is None and e.threads == 1
    # between measured shapes: inverse-square-distance weights in log2 (M, K, N); here two
    # shapes one octave away on either side in M weigh alike, a geometric mean
    between = _profile(**{"fp32_gemm@32x256x128": 10.0, "fp32_gemm@128x256x128": 40.0})
    gops = math.sqrt(10.0 * 40.0)
    assert estimate(m, between).per_op[0].latency_ms == pytest.approx(2 * macs / (gops * 1e9) * 1e3)
    # the nearer shape counts more
    near = estimate(m, _profile(**{"fp32_gemm@64x256x64": 10.0, "fp32_gemm@1x4096x4096": 90.0}))
    assert 10.0 < 2 * macs / near.per_op[0].latency_ms / 1e6 < math.sqrt(10.0 * 90.0)


def test_a_measured_profile_prices_a_depthwise_conv_from_its_own_family() -> None:
    nodes = [helper.make_node("Conv", ["x", "D"], ["y"], group=16, pads=[1, 1, 1, 1], name="dw")]
    m = _model(nodes, [("x", F, [1, 16, 8, 8])], [("y", F, [1, 16, 8, 8])], [_w("D", 16, 1, 3, 3)])
    step = execution_plan(m).steps[0]
    assert (step.kind, step.dims, step.macs) == ("dwconv", (64, 9, 16), 64 * 9 * 16)
    p = _profile(**{"fp32_dwconv@64x9x16": 4.0, "fp32_gemm@64x9x16": 100.0})
    assert estimate(m, p).per_op[0].latency_ms == pytest.approx(2 * 9216 / 4e9 * 1e3)


def test_energy_is_power_times_latency_and_unknown_without_power() -> None:
    rpi4 = load_target("rpi4")
    e = estimate(_cnn(), rpi4)
    assert rpi4.power_w is not None
    assert e.energy_mj == pytest.approx(rpi4.power_w * e.latency_ms)
    assert e.kernel_source == "derived"
    no_power = estimate(_cnn(), _profile())
    assert no_power.energy_mj is None
    assert any("energy unknown" in n for n in no_power.notes)


def test_int8_precision_screens_quantization_and_bad_precisions_are_refused() -> None:
    p = _profile()
    fp32 = estimate(_cnn(), p)
    int8 = estimate(_cnn(), p, precision="int8")
    assert int8.precision == "int8" and fp32.precision == "fp32"
    assert int8.latency_ms < fp32.latency_ms
    assert int8.weight_bytes < fp32.weight_bytes
    assert estimate(_qdq_conv(), p).precision == "int8"
    with pytest.raises(InputError, match="quantized"):
        estimate(_qdq_conv(), p, precision="fp32")
    with pytest.raises(InputError, match="precision 'int4'"):
        estimate(_cnn(), p, precision="int4")
    with pytest.raises(InputError, match="no fp32 throughput"):
        estimate(_cnn(), DeviceProfile(name="bare", source="builtin", arch="x", cpu_model="x"))


def test_symbolic_dimensions_are_resolved_from_the_given_input_shape() -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    m = _model(nodes, [("x", F, ["N", "S", 64])], [("y", F, ["N", "S", 32])], [_w("W", 64, 32)])
    e = estimate(m, _profile(), input_shapes={"x": (1, 128, 64)})
    assert e.macs == 128 * 64 * 32 and e.macs_complete
    assert e.assumed_shapes == {"x": (1, 128, 64)}
    assert e.activation_bytes == int(ARENA_FACTOR * 128 * (64 + 32) * 4)


def test_to_dict_is_json_and_lists_every_kernel() -> None:
    e = estimate(_cnn(), load_target("rpi5"))
    d = json.loads(json.dumps(e.to_dict()))
    assert d["latency_ms"] == pytest.approx(sum(o["latency_ms"] for o in d["per_op"]) + 0.01)
    assert [o["name"] for o in d["per_op"]] == ["conv1", "conv2", "pool", "flat", "fc"]
    assert d["per_op"][0]["fused"] == ["bn1", "relu1"]


def test_profiles_without_kernels_load_and_keep_their_json() -> None:
    old = load_target("rpi4")
    assert old.kernels is None and "kernels" not in old.to_dict()
    new = DeviceProfile.from_json(_profile(op_overhead_us=1.0, **{"fp32_gemm@1x2x3": 2}).to_json())
    assert new.kernels == {"op_overhead_us": 1.0, "fp32_gemm@1x2x3": 2}


def test_x86_blocked_convolutions_pay_the_layout_change_out_of_their_region() -> None:
    """A 16-channel conv runs in NCHWc on an AVX-512 target: the tensor leaving the blocked
    region (GlobalAveragePool -> Flatten) is reordered once; an 8-channel one runs blocked too,
    its output padded to the block, so the pool reads it back in NCHW (a reorder, and twice the
    conv's work); any conv on an Arm target runs on the generic path without reorders."""

    def net(channels: int) -> onnx.ModelProto:
        nodes = [
            helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
            helper.make_node("Flatten", ["p"], ["f"], name="flat"),
            helper.make_node("MatMul", ["f", "G"], ["y"], name="fc"),
        ]
        inits = [_w("W", channels, 3, 3, 3), _w("G", channels, 4)]
        return _model(nodes, [("x", F, [1, 3, 16, 16])], [("y", F, [1, 4])], inits)

    x86 = replace(_profile(), isa=("avx2", "avx512f", "fma"))
    arm = replace(_profile(), arch="aarch64", isa=("asimd", "neon"))
    reorders = [o for o in estimate(net(16), x86).per_op if o.op_type.startswith("Reorder")]
    assert [(o.op_type, o.name) for o in reorders] == [("ReorderOutput", "ReorderOutput:p")]
    assert reorders[0].bytes == 2 * 16 * 4 and reorders[0].latency_ms > 0
    narrow = estimate(net(8), x86).per_op
    assert [o.name for o in narrow if o.op_type.startswith("Reorder")] == ["ReorderOutput:r"]
    generic = replace(x86, isa=("fma",))  # no NCHWc: the conv's own work, no padding
    conv8 = next(o for o in narrow if o.name == "conv")
    plain = next(o for o in estimate(net(8), generic).per_op if o.name == "conv")
    assert conv8.latency_ms > plain.latency_ms
    assert not [o for o in estimate(net(16), arm).per_op if o.op_type.startswith("Reorder")]


@pytest.mark.parametrize("channels", [(1, 8, 8), (3, 16, 16), (16, 24, 32), (4, 8, 16)])
def test_layout_changes_match_onnx_runtimes_optimized_graph(
    tmp_path: Path, channels: tuple[int, int, int]
) -> None:
    """On this machine (x86 with AVX2 or AVX-512: the NCHWc transformer runs), the reorders
    the estimate adds are those of ONNX Runtime's own optimized graph, for convolutions whose
    channels are on the block, off it, and fewer than it (stems, layers after narrow ones)."""
    from edgeloop.hardware._cpu import isa_features
    from edgeloop.runtime import save_optimized

    isa = isa_features()
    here = replace(_profile(), isa=isa)
    if nchwc_block(here) == 0:
        pytest.skip("no NCHWc layout on this machine")
    c0, c1, c2 = channels
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["a"], ["ar"], name="relu1"),
        helper.make_node("Conv", ["ar", "W2"], ["b"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["b"], ["br"], name="relu2"),
        helper.make_node("MaxPool", ["br"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["m"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "G"], ["y"], name="fc"),
    ]
    inits = [_w("W1", c1, c0, 3, 3), _w("W2", c2, c1, 3, 3), _w("G", c2, 4)]
    src = tmp_path / "m.onnx"
    onnx.save(_model(nodes, [("x", F, [1, c0, 16, 16])], [("y", F, [1, 4])], inits), src)
    save_optimized(src, tmp_path / "opt.onnx", graph_optimization="all")
    ort = sorted(
        n.op_type
        for n in onnx.load(tmp_path / "opt.onnx").graph.node
        if n.op_type in ("ReorderInput", "ReorderOutput")
    )
    ours = sorted(o.op_type for o in estimate(src, here).per_op if o.kind == "layout")
    assert ours == ort


def test_dynamic_quantization_runs_as_onnx_runtimes_fused_kernels(tmp_path: Path) -> None:
    """A dynamically quantized MLP (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul ->
    Add per layer) runs as ONNX Runtime's ``DynamicQuantizeMatMul`` kernels: the plan has the
    kernels of its optimized graph, one int8 GEMM per layer that reads the float input and
    writes the float output, the bias among its weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgeloop.runtime import save_optimized

    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "W2"], ["o"], name="fc2"),
        helper.make_node("Add", ["o", "b2"], ["y"], name="bias2"),
    ]
    inits = [_w("W1", 64, 32), _w("b1", 32), _w("W2", 32, 8), _w("b2", 8)]
    src, q = tmp_path / "m.onnx", tmp_path / "q.onnx"
    onnx.save(_model(nodes, [("x", F, [1, 64])], [("y", F, [1, 8])], inits), src)
    quantize_dynamic(str(src), str(q), weight_type=QuantType.QInt8)
    save_optimized(q, tmp_path / "opt.onnx", graph_optimization="all")
    ort_nodes = [n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node]

    plan = execution_plan(q)
    assert [s.op_type for s in plan.steps] == ort_nodes
    fc1 = plan.steps[0]
    assert fc1.op_type == "DynamicQuantizeMatMul" and fc1.precision == "int8"
    assert fc1.kind == "gemm" and fc1.macs == 64 * 32
    assert fc1.input_bytes == 64 * 4 and fc1.output_bytes == 32 * 4
    assert fc1.weight_bytes >= 64 * 32 + 32 * 4  # int8 weights and the float bias
    assert len(fc1.fused) >= 4  # the quantizer, Cast, the two Muls (and the bias Add)
