"""graph_stats on hand-built graphs whose parameter and MAC counts are known by arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeloop.analysis import graph_stats
from edgeloop.errors import FileError, InputError, ModelFormatError


def _w(name: str, *shape: int, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, int, list[int | str]]],
    outputs: list[tuple[str, int, list[int | str] | None]],
    inits: list[onnx.TensorProto] = (),  # type: ignore[assignment]
    opset: int = 17,
    extra_opsets: dict[str, int] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(inits),
    )
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    return helper.make_model(graph, opset_imports=opsets)


F = TensorProto.FLOAT


def test_conv_depthwise_and_matmul_macs_with_dynamic_batch_taken_as_one() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c1"]),  # 3x8x8 -> 8x6x6, 3x3 kernel
        helper.make_node("Conv", ["c1", "D"], ["c2"], group=8, pads=[1, 1, 1, 1]),  # depthwise
        helper.make_node("Flatten", ["c2"], ["f"]),
        helper.make_node("MatMul", ["f", "G"], ["y"]),
    ]
    m = _model(
        nodes,
        [("x", F, ["N", 3, 8, 8])],
        [("y", F, ["N", 10])],
        [_w("W", 8, 3, 3, 3), _w("D", 8, 1, 3, 3), _w("G", 288, 10)],
    )
    s = graph_stats(m)
    assert s.macs == 8 * 36 * 27 + 8 * 36 * 9 + 288 * 10
    assert s.macs_by_op == {"Conv": 8 * 36 * 36, "MatMul": 2880}
    assert s.params == 8 * 27 + 8 * 9 + 2880
    assert s.op_counts == {"Conv": 2, "Flatten": 1, "MatMul": 1}
    assert s.nodes == 4
    assert s.macs_complete
    assert s.assumed_shapes == {"x": (1, 3, 8, 8)}
    assert s.inputs[0].shape == ("N", 3, 8, 8) and s.inputs[0].dtype == "float32"


def test_grouped_conv_and_conv_transpose() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], group=2),  # 4 -> 6 channels, groups of 2
        helper.make_node("ConvTranspose", ["c", "T"], ["y"], strides=[2, 2]),
    ]
    m = _model(
        nodes,
        [("x", F, [1, 4, 5, 5])],
        [("y", F, None)],
        [_w("W", 6, 2, 3, 3), _w("T", 6, 2, 2, 2)],
    )
    s = graph_stats(m)
    conv = 6 * 3 * 3 * (2 * 3 * 3)  # out elements * (C/g * kh * kw)
    convt = 6 * 3 * 3 * (2 * 2 * 2)  # in elements * (M/g * kh * kw)
    assert s.macs_by_op == {"Conv": conv, "ConvTranspose": convt}


def test_gemm_respects_transposes_and_batched_matmul_broadcasts() -> None:
    nodes = [
        helper.make_node("Gemm", ["a", "B"], ["g"], transB=1),  # (2,16) x (32,16)^T
        helper.make_node("MatMul", ["q", "k"], ["s"]),  # (3,4,5,7) x (7,6)
    ]
    m = _model(
        nodes,
        [("a", F, [2, 16]), ("q", F, [3, 4, 5, 7]), ("k", F, [7, 6])],
        [("g", F, None), ("s", F, None)],
        [_w("B", 32, 16)],
    )
    s = graph_stats(m)
    assert s.macs_by_op == {"Gemm": 2 * 32 * 16, "MatMul": 3 * 4 * 5 * 6 * 7}


def test_quantized_ops_count_like_their_float_forms() -> None:
    u8 = TensorProto.UINT8
    scal = [_w("s", 1), numpy_helper.from_array(np.zeros((), np.uint8), "z")]
    nodes = [
        helper.make_node("MatMulInteger", ["a", "B8"], ["mi"]),
        helper.make_node("QLinearMatMul", ["a", "s", "z", "B8", "s", "z", "s", "z"], ["qm"]),
        helper.make_node("QLinearConv", ["xi", "s", "z", "W8", "s", "z", "s", "z"], ["qc"]),
    ]
    m = _model(
        nodes,
        [("a", u8, [4, 8]), ("xi", u8, [1, 2, 4, 4])],
        [("mi", TensorProto.INT32, None), ("qm", u8, None), ("qc", u8, None)],
        [
            _w("B8", 8, 3, dtype=np.uint8),
            _w("W8", 5, 2, 3, 3, dtype=np.uint8),
            *scal,
        ],
    )
    s = graph_stats(m)
    assert s.macs_by_op == {
        "MatMulInteger": 4 * 8 * 3,
        "QLinearMatMul": 4 * 8 * 3,
        "QLinearConv": 5 * 2 * 2 * (2 * 3 * 3),
    }
    assert s.params_by_dtype["uint8"] == 8 * 3 + 5 * 18 + 1


def test_matmul_nbits_uses_its_k_and_n_attributes() -> None:
    node = helper.make_node(
        "MatMulNBits",
        ["a", "Bq", "sc"],
        ["y"],
        domain="com.microsoft",
        K=64,
        N=32,
        bits=4,
        block_size=32,
    )
    m = _model(
        [node],
        [("a", F, [1, 5, 64])],
        [("y", F, None)],
        [_w("Bq", 32, 2, 16, dtype=np.uint8), _w("sc", 64)],
        extra_opsets={"com.microsoft": 1},
    )
    s = graph_stats(m)
    assert s.macs == 5 * 64 * 32
    assert s.op_counts == {"com.microsoft.MatMulNBits": 1}


def test_lstm_and_einsum() -> None:
    hidden, inp, seq = 16, 8, 10
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R"], ["h"], hidden_size=hidden),
        helper.make_node("Einsum", ["p", "q"], ["e"], equation="bij,bjk->bik"),
    ]
    m = _model(
        nodes,
        [("x", F, [seq, 1, inp]), ("p", F, [2, 3, 4]), ("q", F, [2, 4, 5])],
        [("h", F, None), ("e", F, None)],
        [_w("W", 1, 4 * hidden, inp), _w("R", 1, 4 * hidden, hidden)],
    )
    s = graph_stats(m)
    assert s.macs_by_op == {"LSTM": seq * 4 * hidden * (inp + hidden), "Einsum": 2 * 3 * 4 * 5}


def test_onnx_attention_counts_both_products() -> None:
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"])
    m = _model(
        [node],
        [("q", F, [1, 2, 5, 8]), ("k", F, [1, 2, 7, 8]), ("v", F, [1, 2, 7, 8])],
        [("y", F, None)],
        opset=23,
    )
    assert graph_stats(m).macs == 2 * 5 * 7 * (8 + 8)


def test_unknown_dims_are_reported_and_input_shapes_resolve_them() -> None:
    node = helper.make_node("MatMul", ["x", "W"], ["y"])
    m = _model([node], [("x", F, ["batch", "seq", 8])], [("y", F, None)], [_w("W", 8, 4)])
    partial = graph_stats(m)
    assert not partial.macs_complete
    assert partial.macs_unknown == ("MatMul:y",)
    pinned = graph_stats(m, input_shapes={"x": (1, 12, 8)})
    assert pinned.macs == 12 * 8 * 4 and pinned.macs_complete
    with pytest.raises(InputError, match="unknown input 'tokens'; the model's inputs are: x"):
        graph_stats(m, input_shapes={"tokens": (1, 12)})


def test_subgraph_nodes_are_counted() -> None:
    then = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", F, [1, 4])],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["o"])],
        "else",
        [],
        [helper.make_tensor_value_info("o", F, [1, 8])],
    )
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    m = _model(
        [node], [("c", TensorProto.BOOL, []), ("x", F, [1, 8])], [("y", F, None)], [_w("W", 8, 4)]
    )
    s = graph_stats(m)
    assert s.op_counts == {"Identity": 1, "If": 1, "MatMul": 1}
    assert s.macs == 32


def test_file_size_and_path_input(tmp_path: Path) -> None:
    node = helper.make_node("MatMul", ["x", "W"], ["y"])
    m = _model([node], [("x", F, [1, 8])], [("y", F, None)], [_w("W", 8, 4)])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    s = graph_stats(p)
    assert s.size_bytes == p.stat().st_size
    assert s.weight_bytes == 8 * 4 * 4
    assert s.to_dict()["macs"] == 32


def test_external_data_counts_towards_size(tmp_path: Path) -> None:
    node = helper.make_node("MatMul", ["x", "W"], ["y"])
    m = _model([node], [("x", F, [1, 256])], [("y", F, None)], [_w("W", 256, 64)])
    p = tmp_path / "m.onnx"
    onnx.save(m, p, save_as_external_data=True, location="m.data", size_threshold=0)
    s = graph_stats(p)
    assert s.size_bytes == p.stat().st_size + (tmp_path / "m.data").stat().st_size
    assert s.params == 256 * 64 and s.macs == 256 * 64


def test_not_onnx_and_missing_files_are_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    with pytest.raises(ModelFormatError, match="notes.onnx"):
        graph_stats(text)
    with pytest.raises(FileError, match="does not exist"):
        graph_stats(tmp_path / "missing.onnx")
    with pytest.raises(FileError, match="is a directory"):
        graph_stats(tmp_path)


def test_shapes_after_a_contrib_op_come_from_symbolic_inference() -> None:
    nbits = helper.make_node(
        "MatMulNBits",
        ["a", "Bq", "sc"],
        ["h"],
        domain="com.microsoft",
        K=64,
        N=32,
        bits=4,
        block_size=32,
    )  # ONNX's own shape inference does not know this op: h's shape is unknown to it
    m = _model(
        [nbits, helper.make_node("MatMul", ["h", "W"], ["y"])],
        [("a", F, [1, 5, 64])],
        [("y", F, None)],
        [_w("Bq", 32, 2, 16, dtype=np.uint8), _w("sc", 64), _w("W", 32, 8)],
        extra_opsets={"com.microsoft": 1},
    )
    s = graph_stats(m)
    assert s.macs_by_op == {"MatMulNBits": 5 * 64 * 32, "MatMul": 5 * 32 * 8}
    assert s.macs_complete


def test_group_query_attention_counts_the_kv_cache() -> None:
    node = helper.make_node(
        "GroupQueryAttention",
        ["q", "k", "v", "pk", "pv", "seqlens", "total"],
        ["y", "pk_out", "pv_out"],
        domain="com.microsoft",
        num_heads=8,
        kv_num_heads=2,
    )
    i32 = TensorProto.INT32
    m = _model(
        [node],
        [
            ("q", F, [1, 4, 8 * 16]),
            ("k", F, [1, 4, 2 * 16]),
            ("v", F, [1, 4, 2 * 16]),
            ("pk", F, [1, 2, 12, 16]),
            ("pv", F, [1, 2, 12, 16]),
            ("seqlens", i32, [1]),
            ("total", i32, []),
        ],
        [("y", F, None), ("pk_out", F, None), ("pv_out", F, None)],
        extra_opsets={"com.microsoft": 1},
    )
    # 8 query heads x 4 new tokens attend to 12 cached + 4 new, head size 16, two products
    assert graph_stats(m).macs == 2 * 8 * 4 * 16 * 16
