"""Where a device's training data comes from: only its delayed-feedback store.

The agent keeps each prediction's input (the embedding output for a model watched through its
embedding, else the raw input) in a bounded :class:`~edgeloop.monitor.sketch.FeedbackStore`,
and a delayed label turns it into a labelled sample. :func:`feedback_features` takes those
samples, and nothing else: no trainer here reads labels from any other source. Samples stored
as raw inputs are turned into penultimate features by running the deployed model
(:func:`embedding_features`) through the one ONNX Runtime wrapper, ``runtime.Session``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from edgeloop.errors import DataError
from edgeloop.monitor.sketch import FeedbackStore
from edgeloop.runtime import Session, run_batched

__all__ = ["EMBEDDING_OUTPUT", "embedding_features", "feedback_features"]

EMBEDDING_OUTPUT = "edgeloop_embedding"  # the graph output optimize.add_embedding_output adds

Featurize = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def embedding_features(session: Session, x: npt.ArrayLike, output: str = EMBEDDING_OUTPUT,
                       batch_size: int = 256) -> npt.NDArray[np.float32]:
    """The model's penultimate activations for inputs ``x``: its ``output`` graph output."""
    if output not in session.output_names:
        raise DataError(f"the model has no {output!r} output (its outputs are "
                        f"{session.output_names}); pack it with a monitoring reference")
    feats = run_batched(session, x, batch_size)[output]
    return np.asarray(feats, np.float32).reshape(len(feats), -1)


def feedback_features(store: FeedbackStore, featurize: Featurize | None = None,
                      ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The labelled samples the feedback store kept, as (features, labels). ``featurize`` maps
    the stored inputs to features (None: they are features already, an embedding view)."""
    x, y = store.labelled_samples()
    if len(y) == 0:
        return np.zeros((0, 0), np.float32), y
    feats = np.asarray(x if featurize is None else featurize(x), np.float32)
    feats = feats.reshape(len(y), -1)
    if not np.all(np.isfinite(feats)):
        raise DataError("feedback samples: features not all finite")
    return feats, y
