"""A :class:`ModelCard` for an ONNX model built elsewhere (what ``edgeloop card`` writes).

Everything comes from the file itself: its hash and size, the inputs and outputs ONNX Runtime
reports, parameters and MACs (counted by ``edgeloop.analysis`` when onnx is installed; a device
without onnx gets a card without them), and metrics only when labelled data is given to score.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeloop.artifacts import LineageRef, ModelCard, sha256_file
from edgeloop.errors import EdgeloopError, InputError
from edgeloop.runtime._evaluate import TASKS, evaluate
from edgeloop.runtime._session import Session

__all__ = ["card_path", "describe_model"]


def card_path(model: str | Path) -> Path:
    """Where the card of ``model`` goes by default: ``<model>.card.json`` beside it."""
    p = Path(model)
    return p.with_name(p.name + ".card.json")


def describe_model(
    model: str | Path,
    *,
    name: str | None = None,
    task: str | None = None,
    data: Any = None,
    labels: Sequence[str] = (),
    description: str = "",
    batch_size: int = 256,
    threads: int | None = None,
    graph_stats: Callable[[Path], Any] | None = None,
) -> ModelCard:
    """The card of an ONNX file; ``data`` (an ``edgeloop.data.Dataset``) also scores it.

    ``task`` defaults to the data's task, else ``classification``. The data's name and
    sha256 go into ``dataset`` and the lineage, its classes into ``labels`` unless given.
    Raises :class:`FileError` / :class:`ModelFormatError` for a missing or invalid model and
    :class:`ModelInputError` when the data does not fit its inputs. ``graph_stats`` (the
    caller passes ``edgeloop.analysis.graph_stats`` where onnx is installed: runtime is device
    layer and reads no graphs itself) adds parameters and MACs.
    """
    path = Path(model)
    session = Session(path, threads=threads)  # validates the file before anything is hashed
    chosen = task or getattr(data, "task", None) or "classification"
    if chosen not in TASKS:
        raise InputError(f"task {chosen!r} is not one of {', '.join(TASKS)}")
    params, macs = _graph_counts(path, graph_stats)
    metrics: dict[str, float] = {}
    lineage: list[LineageRef] = []
    dataset = None
    note: dict[str, Any] = {"source": "edgeloop card"}
    if data is not None:
        metrics = evaluate(session, data.x, data.y, chosen, batch_size=batch_size)
        dataset = getattr(data, "name", None)
        note.update(split=getattr(data, "split", None), samples=len(data.y))
        if getattr(data, "sha256", ""):
            lineage.append(LineageRef("dataset", data.sha256, name=dataset))
        labels = labels or tuple(getattr(data, "classes", ()) or ())
    return ModelCard(
        name=name or path.stem,
        sha256=sha256_file(path),
        format="onnx",
        task=chosen,
        size_bytes=path.stat().st_size,
        params=params,
        macs=macs,
        inputs=session.inputs,
        outputs=session.outputs,
        labels=tuple(labels),
        dataset=dataset,
        metrics=metrics,
        lineage=tuple(lineage),
        created_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        description=description,
        extra={"card": note},
    )


def _graph_counts(
    path: Path, graph_stats: Callable[[Path], Any] | None
) -> tuple[int | None, int | None]:
    """(params, MACs per sample) from ``graph_stats``; MACs only when every op is counted."""
    if graph_stats is None:
        return None, None
    try:
        stats = graph_stats(path)
    except EdgeloopError:  # ORT loaded it; a graph onnx cannot infer is still a model
        return None, None
    return stats.params, (stats.macs if stats.macs_complete else None)
