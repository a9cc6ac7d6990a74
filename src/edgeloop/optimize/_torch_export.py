"""Torch states in and out of the pipeline (imports torch: only used when a recipe needs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeloop.errors import InputError
from edgeloop.optimize._passes import ModelState

__all__ = ["export_state", "state_from_checkpoint"]


def state_from_checkpoint(path: Path) -> ModelState:
    """A torch state from a zoo checkpoint, with its metadata (input spec, task, dataset).

    Pruned checkpoints (``edgeloop prune``) load too: their pruning history is replayed."""
    from edgeloop.optimize._torch_io import load_model

    model, meta = load_model(path)
    return ModelState(
        "torch",
        torch_model=model,
        arch=meta.get("arch"),
        arch_kwargs=dict(meta.get("arch_kwargs") or {}),
        meta=dict(meta),
    )


def _spec_from_data(data: Any) -> list[dict[str, Any]] | None:
    if data is None:
        return None
    if isinstance(data, str) and not Path(data).exists():
        from edgeloop.data import load_dataset

        data = load_dataset(data, split="test", seed=0)
    if hasattr(data, "input_names") and hasattr(data, "shapes"):
        shapes, dtypes = data.shapes(), data.dtypes()
        return [{"name": n, "shape": list(shapes[n]), "dtype": dtypes[n]} for n in data.input_names]
    return None


def export_state(state: ModelState, path: Path, data: Any) -> ModelState:
    """Export a torch state to ONNX with the zoo's checked exporter (output parity included)."""
    from edgeloop.zoo import export_onnx

    meta = dict(state.meta)
    input_shape = None
    if not meta.get("input_spec"):
        spec = _spec_from_data(data)
        if spec is not None:
            meta["input_spec"] = spec
        elif state.input_shape is not None:
            input_shape = (1, *state.input_shape)
        else:
            raise InputError(
                "cannot export the PyTorch model: its input shape is unknown; pass data or a "
                "checkpoint that records its input spec"
            )
    if state.arch:
        meta.setdefault("arch", state.arch)
        meta.setdefault("arch_kwargs", state.arch_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(state.torch_model, path, input_shape=input_shape, meta=meta)
    return ModelState(
        "onnx",
        onnx_path=path,
        arch=state.arch,
        arch_kwargs=dict(state.arch_kwargs),
        input_shape=state.input_shape,
        notes=list(state.notes),
        meta=meta,
    )
