"""``save_optimized``: let ONNX Runtime optimise a graph once and write the result.

The fuse pass and the quantization preflight ask ONNX Runtime for the graph it would run
(constant folding, operator fusion at a given level); the only way to get it is a session with
``optimized_model_filepath`` set, so that session is built here, with the runtime's others.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from edgeloop.errors import ModelFormatError
from edgeloop.runtime._session import GRAPH_OPTIMIZATION, _last_line, check_graph_optimization

__all__ = ["save_optimized"]


def save_optimized(
    src: str | Path,
    dest: str | Path,
    *,
    graph_optimization: str = "all",
    ort_format: bool = False,
    external_data_min_bytes: int | None = None,
) -> Path:
    """Load ``src`` on the CPU at ``graph_optimization`` and write the optimised graph to ``dest``.

    ``ort_format`` writes ONNX Runtime's own format (for minimal builds);
    ``external_data_min_bytes`` moves initializers at least that large to ``<dest>.data``.
    Raises :class:`ModelFormatError` when ONNX Runtime cannot load or optimise the model.
    """
    check_graph_optimization(graph_optimization)
    dest = Path(dest)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = GRAPH_OPTIMIZATION[graph_optimization]
    options.optimized_model_filepath = str(dest)
    if ort_format:
        options.add_session_config_entry("session.save_model_format", "ORT")
    elif external_data_min_bytes is not None:
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", dest.name + ".data"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes",
            str(external_data_min_bytes),
        )
    try:
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelFormatError(
            f"ONNX Runtime could not optimise {str(src)!r} at level {graph_optimization}: "
            f"{_last_line(e)}"
        ) from e
    return dest
