"""Read a deployed ONNX model's classifier head, and write a candidate with a new one.

The model first gets its ``edgeloop_embedding`` output (``optimize.add_embedding_output``, the
same edit the monitoring pack step makes); the head is the MatMul or Gemm that consumes those
activations, with its bias (Gemm's C, or the Add after a MatMul). The weight is returned as
(features, classes) whatever the graph stores (Gemm ``transB``). Writing replaces exactly those
initializers, so every other byte of the graph is the base model's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ModelError
from edgeloop.federated.device import Head

__all__ = ["HeadSite", "read_head", "with_embedding", "write_head"]


class HeadSite:
    """Where the head's weight and bias live in the graph."""

    def __init__(self, weight: str, bias: str | None, transposed: bool) -> None:
        self.weight, self.bias, self.transposed = weight, bias, transposed


def with_embedding(model: bytes) -> bytes:
    """``model`` with its penultimate activations as the ``edgeloop_embedding`` output."""
    from edgeloop.optimize import add_embedding_output

    return add_embedding_output(model)[0]


def _site(model: bytes) -> tuple[HeadSite, dict[str, npt.NDArray[np.float32]]]:
    import onnx
    from onnx import numpy_helper

    from edgeloop.optimize import EMBEDDING_OUTPUT

    m = onnx.load_from_string(model)
    g = m.graph
    ident = next((n for n in g.node if EMBEDDING_OUTPUT in n.output), None)
    if ident is None:
        raise ModelError(f"model has no {EMBEDDING_OUTPUT!r} output: call with_embedding first")
    source = ident.input[0]
    inits = {i.name: i for i in g.initializer}
    heads = [n for n in g.node if n.op_type in ("MatMul", "Gemm") and source in n.input]
    if len(heads) != 1:
        raise ModelError(f"expected one MatMul/Gemm over {source!r}, found {len(heads)}")
    head = heads[0]
    others = [i for i in head.input[:2] if i != source]
    if len(others) != 1 or others[0] not in inits or head.input[0] != source:
        raise ModelError(f"head {head.name or head.op_type!r}: the weight is not a constant")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in head.attribute}
    if head.op_type == "Gemm" and (attrs.get("alpha", 1.0) != 1.0 or
                                   attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0)):
        raise ModelError("Gemm head with alpha/beta != 1 or transA: not supported")
    transposed = bool(attrs.get("transB", 0))
    bias: str | None = None
    if head.op_type == "Gemm" and len(head.input) > 2 and head.input[2]:
        bias = head.input[2]
    else:
        add = next((n for n in g.node if n.op_type == "Add" and head.output[0] in n.input), None)
        if add is not None:
            bias = next((i for i in add.input if i in inits), None)
    if bias is not None and bias not in inits:
        raise ModelError(f"head bias {bias!r} is not a constant")
    values = {k: numpy_helper.to_array(inits[k]).astype(np.float32)
              for k in (others[0], bias) if k is not None}
    return HeadSite(others[0], bias, transposed), values


def read_head(model: bytes) -> Head:
    """The head of a model that has the ``edgeloop_embedding`` output."""
    site, values = _site(model)
    w = values[site.weight]
    w = w.T if site.transposed else w
    b = values[site.bias].reshape(-1) if site.bias else np.zeros(w.shape[1], np.float32)
    return Head(w, b)


def write_head(model: bytes, head: Head) -> bytes:
    """``model`` with ``head``'s weight and bias in place of its own (same shapes)."""
    import onnx
    from onnx import numpy_helper

    site, values = _site(model)
    w = head.weight.T if site.transposed else head.weight
    if w.shape != values[site.weight].shape:
        raise ModelError(f"head weight {head.weight.shape} does not fit the model's "
                         f"{values[site.weight].shape}")
    if site.bias is None and np.any(head.bias):
        raise ModelError("the model's head has no bias to hold the trained one")
    m = onnx.load_from_string(model)
    for init in m.graph.initializer:
        if init.name == site.weight:
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w, np.float32), init.name))
        elif site.bias is not None and init.name == site.bias:
            shape = values[site.bias].shape
            init.CopyFrom(numpy_helper.from_array(head.bias.reshape(shape), init.name))
    out: bytes = m.SerializeToString()
    return out
