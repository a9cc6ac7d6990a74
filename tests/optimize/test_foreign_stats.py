"""MACs and parameters of models exported the way other toolchains do (Constant weights,
opset 11/12, symbolic or -1 batch dims) match the PyTorch module they came from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from edgeloop.analysis import graph_stats


def _torch_counts(arch: str) -> tuple[int, int]:
    """MACs (Conv2d and Linear, batch 1) and parameters counted on the torch module itself."""
    import torch
    from torch import nn

    from edgeloop.zoo import build_model

    kwargs = {
        "mobilenet": {"width": 0.5, "input_size": 32, "num_classes": 4},
        "cnn": {"num_classes": 10},
    }[arch]
    shape = {"mobilenet": (1, 3, 32, 32), "cnn": (1, 1, 8, 8)}[arch]
    model = build_model(arch, **kwargs).eval()
    macs = 0

    def hook(m: nn.Module, _: object, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            macs += out.numel() * m.in_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(*shape))
    # BatchNorm running statistics are parameters of the exported graph too
    params = sum(p.numel() for p in model.parameters())
    params += sum(
        b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")
    )
    return macs, params


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mobilenet", "cnn"])
@pytest.mark.parametrize("opset", [11, 12])
def test_constant_weights_count_like_initializers(
    foreign_cnn: Callable[..., Path], arch: str, opset: int
) -> None:
    # prepare
    want_macs, want_params = _torch_counts(arch)
    # act
    const = graph_stats(foreign_cnn(arch, opset, True))
    init = graph_stats(foreign_cnn(arch, opset, False))
    # assert
    assert const.macs == init.macs == want_macs
    assert const.macs_complete
    assert const.params == init.params
    # the exporter shares identical tensors (fresh BatchNorm statistics) through Identity nodes
    assert 0.9 * want_params < const.params <= want_params + 16
    assert const.weight_bytes == init.weight_bytes


def test_minus_one_batch_dim_counts_as_dynamic(foreign_cnn: Callable[..., Path]) -> None:
    # prepare: some exporters write -1 (not a dim_param) for the dynamic batch dimension
    model = onnx.load(str(foreign_cnn("cnn", 12, True)))
    for vi in [*model.graph.input, *model.graph.output]:
        d = vi.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = -1
    # act
    stats = graph_stats(model)
    # assert
    assert stats.macs == _torch_counts("cnn")[0]
    assert stats.assumed_shapes["x"] == (1, 1, 8, 8)


def test_report_counts_macs_at_the_data_shape_for_symbolic_sequence_dims(tmp_path: Path) -> None:
    # prepare: input [N, S, 16] with S symbolic; the data has S = 5
    import json

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgeloop.optimize import optimize

    w = numpy_helper.from_array(np.ones((16, 8), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", 8])],
        [w],
    )
    src = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    data = {"x": np.random.default_rng(0).standard_normal((16, 5, 16)).astype(np.float32)}
    # act
    optimize(src, "fp16", data, out_dir=tmp_path / "out")
    # assert
    rows = json.loads((tmp_path / "out" / "report.json").read_text())["steps"]
    assert rows[0]["macs"] == 5 * 16 * 8
    assert rows[0]["params"] == 16 * 8
