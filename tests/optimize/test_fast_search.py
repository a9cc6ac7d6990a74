"""The budget search's probes are the fully quantized model with some nodes given their float
inputs back (graph surgery), not a new quantize_static run each: the result matches what
excluding those nodes from quantization gives."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_static

from edgeloop.optimize._measure import Quality
from edgeloop.optimize._model import name_nodes
from edgeloop.optimize._passes import PassContext
from edgeloop.optimize._quantize import _by_role, restore_float


class _Reader:
    def __init__(self, x: np.ndarray) -> None:
        self.x, self.i = x, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.x):
            return None
        self.i += 8
        return {"x": self.x[self.i - 8 : self.i]}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


def test_restored_node_matches_excluding_it(quant_conv: Path, tmp_path: Path) -> None:
    # prepare: named nodes, the all-int8 model and the one ORT builds without the first Conv
    model = onnx.load(str(quant_conv))
    name_nodes(model)
    src = tmp_path / "named.onnx"
    onnx.save(model, str(src))
    conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    x = np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
    kw = {"per_channel": True, "activation_type": QuantType.QUInt8}
    full, excluded = tmp_path / "full.onnx", tmp_path / "excluded.onnx"
    quantize_static(str(src), str(full), _Reader(x), **kw)  # type: ignore[arg-type]
    quantize_static(str(src), str(excluded), _Reader(x), nodes_to_exclude=[conv], **kw)  # type: ignore[arg-type]
    # act
    out = restore_float(full, src, frozenset({conv}), tmp_path / "restored.onnx")
    # assert: the node reads the float input and weight; no dangling Q/DQ or int8 weight left
    restored = onnx.load(str(out))
    node = next(n for n in restored.graph.node if n.name == conv)
    assert list(node.input[:2]) == list(
        next(n for n in model.graph.node if n.name == conv).input[:2]
    )
    inits = {t.name for t in restored.graph.initializer}
    assert node.input[1] in inits
    read = {i for n in restored.graph.node for i in n.input}
    assert all(t in read for t in inits)
    ops = Counter(n.op_type for n in restored.graph.node)
    full_ops = Counter(n.op_type for n in onnx.load(str(full)).graph.node)
    assert ops["DequantizeLinear"] < full_ops["DequantizeLinear"]
    # the numbers: near ORT's exclusion (which also drops the Q/DQ after the node's output,
    # where surgery keeps the consumer's), and no further from float than the all-int8 model
    ref = _run(src, x)
    got, theirs, all_int8 = _run(out, x), _run(excluded, x), _run(full, x)
    scale = float(np.abs(ref).max())
    assert float(np.abs(got - theirs).max()) < 0.05 * scale
    assert np.abs(got - ref).mean() <= np.abs(all_int8 - ref).mean() * 1.05


class _FakeEvaluator:
    """SQNR rises most when the ``output`` role stays float, a little for two others."""

    def __init__(self) -> None:
        self.probes = 0

    def score(self, path: Path, *, latency: bool = True, limit: int | None = None) -> Quality:
        self.probes += 1
        kept = json.loads(path.read_text())
        gain = {"/output/": 3.0, "/intermediate/": 0.4, "/query/": 0.1}
        return Quality(sqnr_mean_db=20.0 + sum(v for k in kept for r, v in gain.items() if r in k))


def test_role_probes_narrow_the_single_node_candidates(tmp_path: Path) -> None:
    # prepare: 6 layers x 4 MatMuls, one probe per role expected before any node probe
    cands = [
        (f"/encoder/layer.{i}/{role}/MatMul", 100)
        for i in range(6)
        for role in ("query", "key", "intermediate", "output")
    ]

    def build(exclude: list[str], out: Path) -> None:
        out.write_text(json.dumps(exclude))

    evaluator = _FakeEvaluator()
    ctx = PassContext(workdir=tmp_path, options={"evaluator": evaluator})
    details: dict[str, Any] = {}
    # act
    kept = _by_role(cands, build, ctx, details)
    # assert: only the output MatMuls go on (the others gain under a quarter of their 18 dB);
    # 1 reference + 4 role probes were made
    assert [c[0] for c in kept] == [f"/encoder/layer.{i}/output/MatMul" for i in range(6)]
    assert evaluator.probes == 5
    assert details["role_search"][0] == {
        "role": "/encoder/layer.#/output/MatMul",
        "nodes": 6,
        "sqnr_gain_db": 18.0,
    }


def test_few_candidates_skip_the_role_probes(tmp_path: Path) -> None:
    cands = [(f"Conv_{i}", 10) for i in range(5)]
    evaluator = _FakeEvaluator()
    ctx = PassContext(workdir=tmp_path, options={"evaluator": evaluator})
    assert _by_role(cands, lambda e, o: None, ctx, {}) == cands
    assert evaluator.probes == 0
