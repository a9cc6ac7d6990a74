"""The ClientApp a device's SuperNode runs in a deployed federated run.

``flower-supernode`` loads ``edgeloop.federated.device._deployed:app`` (named by the run's
Flower App Bundle) in its ClientApp process. The node's samples come from the agent, never from
the run: the agent writes its labelled delayed-feedback features (``x``, ``y``) to an ``.npz``
file and starts the SuperNode with ``--node-config "edgeloop-samples='PATH'"``. The file is read
once per process, checked like any input (finite features, non-negative integer labels, at most
:data:`MAX_SAMPLES`), split into train and held-out samples, and served by the torch-free head
trainer. Imports ``flwr`` (the ``federated`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import Context

from edgeloop.errors import DataError
from edgeloop.federated.device._clientapp import client_app
from edgeloop.federated.device._trainers import HeadTrainer, LocalTrainer, split_held_out

__all__ = ["MAX_SAMPLES", "NODE_SAMPLES", "app", "load_samples"]

NODE_SAMPLES = "edgeloop-samples"  # the node config key naming the samples file
MAX_SAMPLES = 1_000_000

_cache: dict[str, dict[str, LocalTrainer]] = {}


def load_samples(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) from the agent's samples file, checked."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            x = np.asarray(data["x"], np.float32)
            y = np.asarray(data["y"])
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"samples file {str(path)!r:.120}: {e}") from None
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or not 0 < len(y) <= MAX_SAMPLES:
        raise DataError(f"samples file {str(path)!r:.120}: expected x (N, D) and y (N,), "
                        f"0 < N <= {MAX_SAMPLES}")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any() or not np.isfinite(x).all():
        raise DataError(f"samples file {str(path)!r:.120}: expected finite features and "
                        "non-negative integer labels")
    return x, y.astype(np.int64)


def _trainers(context: Context) -> dict[str, LocalTrainer]:
    path = context.node_config.get(NODE_SAMPLES)
    if not isinstance(path, str) or not path:
        raise DataError(f"this SuperNode has no {NODE_SAMPLES!r} in its node config")
    if path not in _cache:
        _cache[path] = {"head": HeadTrainer(*split_held_out(*load_samples(path)))}
    return _cache[path]


app = client_app(_trainers)
