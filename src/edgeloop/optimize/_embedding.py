"""Pack-time graph edit for monitoring: expose the penultimate activations as a graph output.

For inputs too wide to watch per feature (images, token ids), the monitoring reference watches
a PCA projection of the model's penultimate activations (``source="embedding"``). The device
gets them from the model's own run only if the graph outputs them: :func:`add_embedding_output`
finds the classifier head (the last MatMul or Gemm on the path to the class output, through
Softmax/Add/Identity/Reshape/Flatten) and adds its input as an extra output. The extra output
costs no compute (the tensor is computed anyway) and changes no existing output.
Build layer: needs ``onnx``.
"""

from __future__ import annotations

from edgeloop.errors import InputError, ModelFormatError

__all__ = ["EMBEDDING_OUTPUT", "add_embedding_output"]

EMBEDDING_OUTPUT = "edgeloop_embedding"
_PASS_THROUGH = {"Softmax", "LogSoftmax", "Add", "Identity", "Reshape", "Flatten", "Squeeze"}
_HEADS = {"MatMul", "Gemm"}


def add_embedding_output(model: bytes, output: str | None = None) -> tuple[bytes, str]:
    """``model`` with the class output's penultimate activations as one more graph output
    (named :data:`EMBEDDING_OUTPUT`, an Identity of the head's input); returns the model and
    that name. ``output``: the class output (default: the first graph output)."""
    import onnx
    from onnx import helper

    try:
        m = onnx.load_from_string(model)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelFormatError(f"not an ONNX model: {e}") from e
    if not m.HasField("graph") or not m.opset_import:
        raise ModelFormatError("not an ONNX model: no graph or opset")
    g = m.graph
    outputs = [o.name for o in g.output]
    if EMBEDDING_OUTPUT in outputs:
        return model, EMBEDDING_OUTPUT
    target = output or (outputs[0] if outputs else None)
    if target not in outputs:
        raise InputError(f"class output {target!r}: the model's outputs are {outputs}")
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    name, seen = target, 0
    while seen < 64:
        node = producer.get(name)
        if node is None:
            raise InputError(f"no MatMul/Gemm head found before output {target!r}")
        if node.op_type in _HEADS:
            head_in = next((i for i in node.input if i not in inits), None)
            if head_in is None:
                raise InputError(f"head {node.name or node.op_type!r} has no activation input")
            break
        if node.op_type not in _PASS_THROUGH:
            raise InputError(
                f"output {target!r} comes from {node.op_type}, not a classifier "
                "head (MatMul or Gemm, then Add/Softmax)"
            )
        name = next(i for i in node.input if i not in inits)
        seen += 1
    else:
        raise InputError(f"no MatMul/Gemm head within 64 nodes of output {target!r}")
    inferred = onnx.shape_inference.infer_shapes(m)
    typed = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input)}
    g.node.append(
        helper.make_node(
            "Identity", [head_in], [EMBEDDING_OUTPUT], name="edgeloop_embedding_output"
        )
    )
    if head_in in typed:
        out = onnx.ValueInfoProto()
        out.CopyFrom(typed[head_in])
        out.name = EMBEDDING_OUTPUT
    else:  # no inferred shape: a float matrix of unknown size
        out = helper.make_tensor_value_info(EMBEDDING_OUTPUT, onnx.TensorProto.FLOAT, ["n", "d"])
    g.output.append(out)
    onnx.checker.check_model(m)
    return m.SerializeToString(), EMBEDDING_OUTPUT
