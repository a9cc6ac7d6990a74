"""The device half of federated learning (device layer: numpy and ONNX Runtime, never torch).

::

    x, y = feedback_features(agent_feedback_store)            # labels only from delayed feedback
    result = train_head(Head.from_arrays(global_arrays), x, y, TrainConfig(proximal_mu=0.01))
    delta = {k: result.head.to_arrays()[k] - global_arrays[k] for k in global_arrays}
    wire = encode_update(delta, "int8")                      # wire_bytes(wire) on the wire

The head is the deployed ONNX model's last MatMul/Gemm over its penultimate activations (the
``edgeloop_embedding`` output the monitoring pack step adds). The Flower ClientApp that wraps
this trainer imports ``flwr`` (the ``federated`` extra) and is loaded only when asked for, so
this package imports without Flower.
"""

from edgeloop.federated.device._compress import (
    COMPRESSIONS,
    decode_update,
    encode_update,
    parse_compression,
    wire_bytes,
)
from edgeloop.federated.device._head import Head, TrainConfig, TrainResult, train_head
from edgeloop.federated.device._local import (
    EMBEDDING_OUTPUT,
    embedding_features,
    feedback_features,
)

__all__ = [
    "COMPRESSIONS",
    "EMBEDDING_OUTPUT",
    "Head",
    "TrainConfig",
    "TrainResult",
    "decode_update",
    "embedding_features",
    "encode_update",
    "feedback_features",
    "parse_compression",
    "train_head",
    "wire_bytes",
]
