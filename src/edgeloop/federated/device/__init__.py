"""The device half of federated learning (device layer: numpy and ONNX Runtime, never torch).

::

    x, y = feedback_features(agent_feedback_store)            # labels only from delayed feedback
    result = train_head(Head.from_arrays(global_arrays), x, y, TrainConfig(proximal_mu=0.01))
    delta = {k: result.head.to_arrays()[k] - global_arrays[k] for k in global_arrays}
    wire = encode_update(delta, "int8")                      # wire_bytes(wire) on the wire

The head is the deployed ONNX model's last MatMul/Gemm over its penultimate activations (the
``edgeloop_embedding`` output the monitoring pack step adds). The Flower ClientApp that wraps
this trainer imports ``flwr`` (the ``federated`` extra) and is loaded only when asked for, so
this package imports without Flower: ``client_app`` and ``TrainerProvider`` load
``edgeloop.federated.device._clientapp`` (and Flower) on first use.
"""

from typing import TYPE_CHECKING, Any

from edgeloop.federated.device._compress import (
    COMPRESSIONS,
    decode_update,
    encode_update,
    parse_compression,
    wire_bytes,
)
from edgeloop.federated.device._head import Head, TrainConfig, TrainResult, train_head
from edgeloop.federated.device._join import (
    JoinPolicy,
    bind_node_key,
    eligible,
    node_key,
    node_key_openssh,
    node_public_openssh,
    verify_node_binding,
)
from edgeloop.federated.device._local import (
    EMBEDDING_OUTPUT,
    embedding_features,
    feedback_features,
)
from edgeloop.federated.device._participant import Participant, flower_installed
from edgeloop.federated.device._process import kill_tree, stop_tree
from edgeloop.federated.device._supernode import SuperNode
from edgeloop.federated.device._trainers import (
    HeadTrainer,
    LocalTrainer,
    split_held_out,
    train_config,
)

if TYPE_CHECKING:
    from edgeloop.federated.device._clientapp import (
        CLIPPING_NORM,
        SECAGG_ARRAYS,
        SECAGG_MAX_WEIGHT,
        TrainerProvider,
        client_app,
    )

__all__ = [
    "CLIPPING_NORM",
    "COMPRESSIONS",
    "EMBEDDING_OUTPUT",
    "SECAGG_ARRAYS",
    "SECAGG_MAX_WEIGHT",
    "Head",
    "HeadTrainer",
    "JoinPolicy",
    "LocalTrainer",
    "Participant",
    "SuperNode",
    "TrainConfig",
    "TrainResult",
    "TrainerProvider",
    "bind_node_key",
    "client_app",
    "decode_update",
    "eligible",
    "embedding_features",
    "encode_update",
    "feedback_features",
    "kill_tree",
    "flower_installed",
    "node_key",
    "node_key_openssh",
    "node_public_openssh",
    "parse_compression",
    "split_held_out",
    "stop_tree",
    "train_config",
    "train_head",
    "verify_node_binding",
    "wire_bytes",
]


def __getattr__(name: str) -> Any:
    """``client_app``, ``TrainerProvider`` and the SecAgg+ config keys import Flower: only when
    asked for."""
    if name in ("client_app", "TrainerProvider", "CLIPPING_NORM", "SECAGG_ARRAYS",
                "SECAGG_MAX_WEIGHT"):
        from edgeloop.federated.device import _clientapp

        return getattr(_clientapp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
