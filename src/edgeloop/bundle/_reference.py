"""``model_reference``: the monitoring reference of a model, from reference data (pack time).

Runs the model (ONNX Runtime, through ``edgeloop.runtime``) on held-out inputs, finds its class
output (probabilities or logits) and builds :func:`edgeloop.monitor.sketch.build_reference`:
per feature for narrow inputs, a PCA of the flattened input for wide ones, or a PCA of the
model's penultimate activations when the model outputs them (``embedding_output``, added at
pack time by ``edgeloop.optimize.add_embedding_output``). Device layer: no onnx, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeloop.errors import InputError
from edgeloop.monitor.sketch import MonitorReference, Projection, build_reference

__all__ = ["model_reference"]

_BATCH = 256


def model_reference(
    model: bytes,
    x: Any,
    labels: Any = None,
    *,
    classes: Sequence[str] | None = None,
    embedding_output: str | None = None,
    output: str | None = None,
    input_name: str | None = None,
    projection: Projection | None = None,
) -> MonitorReference:
    """The reference of ``model`` on inputs ``x`` (n, ...) with optional ``labels`` (n,).

    ``projection``: an earlier reference's, kept (see ``build_reference``)."""
    from edgeloop.runtime import Session

    sess = Session(model, providers=["CPUExecutionProvider"])
    spec = next((s for s in sess.inputs if input_name in (None, s.name)), None)
    if spec is None:
        raise InputError(f"input {input_name!r}: the model's inputs are "
                         f"{[s.name for s in sess.inputs]}")
    xa = np.asarray(x)
    if len(xa) < 2:
        raise InputError(f"reference data: expected >= 2 samples, got {len(xa)}")
    xa = xa.astype(np.dtype(spec.dtype) if spec.dtype else xa.dtype, copy=False)
    outs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(xa), _BATCH):
        for k, v in sess.run({spec.name: xa[i : i + _BATCH]}).items():
            outs.setdefault(k, []).append(np.asarray(v))
    joined = {k: np.concatenate(v) for k, v in outs.items()}
    name = output or next((k for k, v in joined.items() if k != embedding_output
                           and v.ndim == 2 and v.shape[1] >= 2), None)
    if name is None or name not in joined:
        raise InputError(f"no class output (n, classes) among {sorted(joined)}")
    probs = joined[name].astype(np.float64)
    is_prob = bool(np.all(probs >= -1e-6) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3))
    emb = None
    if embedding_output is not None:
        if embedding_output not in joined:
            raise InputError(f"embedding output {embedding_output!r} not among {sorted(joined)}")
        emb = joined[embedding_output].reshape(len(xa), -1)
    return build_reference(
        xa, probs, labels, classes=classes,
        output_kind="probabilities" if is_prob else "logits",
        embeddings=emb, embedding_output=embedding_output, projection=projection,
    )
