"""``check_parity``: does an ONNX model on ONNX Runtime reproduce reference outputs?

The export (``edgeloop.zoo``) and the optimisation passes compare a model with the outputs of
its source; the comparison runs the model here, on the runtime a device uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgeloop.errors import ParityError
from edgeloop.runtime._session import Session

__all__ = ["check_parity"]


def check_parity(
    model: str | Path | bytes | Session,
    feeds: Mapping[str, np.ndarray],
    reference: Sequence[np.ndarray],
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    against: str = "the reference",
) -> float:
    """The largest absolute difference between the model's outputs and ``reference``.

    Runs ``model`` (a path, bytes or a :class:`Session`) once on one CPU thread over
    ``feeds``; output ``i`` is compared with ``reference[i]``. Raises :class:`ParityError`
    naming the first output that differs by more than ``atol + rtol * |reference|``;
    :class:`ModelError` subclasses when the runtime cannot load or run it.
    """
    session = (
        model
        if isinstance(model, Session)
        else Session(model, threads=1, providers=["CPUExecutionProvider"])
    )
    got = session.run_unchecked({k: np.asarray(v) for k, v in feeds.items()})
    worst = 0.0
    for i, (name, ref) in enumerate(zip(session.output_names, reference, strict=False)):
        ref_np = np.asarray(ref)
        diff = np.abs(np.asarray(got[name], dtype=np.float64) - ref_np)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        if not np.all(diff <= atol + rtol * np.abs(ref_np)):
            raise ParityError(
                f"output {i} of the ONNX model differs from {against} by up to {worst:.3g} "
                f"(allowed: atol {atol:g} + rtol {rtol:g} x |reference|)"
            )
    return worst
