"""Checkpoints: a zoo model's weights plus everything needed to rebuild, export and trace it."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeloop import __version__
from edgeloop._io import atomic_path
from edgeloop.errors import FileError, ModelFormatError
from edgeloop.zoo._architectures import arch_info, build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "input_spec_of",
    "load_checkpoint",
    "read_torch_file",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "edgeloop.checkpoint/1"
_REQUIRED = ("arch", "arch_kwargs", "state_dict", "input_spec", "task")


def input_spec_of(
    names: Sequence[str], shapes: Mapping[str, Sequence[int]], dtypes: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The checkpoint's input spec: name, shape without the batch axis, dtype, per input."""
    return [
        {"name": n, "shape": [int(d) for d in shapes[n]], "dtype": str(dtypes[n])} for n in names
    ]


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    input_spec: Sequence[Mapping[str, Any]],
    task: str,
    classes: Sequence[str] = (),
    dataset: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: a plain dict that ``torch.load(weights_only=True)`` reads.

    Keys: format, arch, arch_kwargs, state_dict, input_spec (name, shape without batch, dtype),
    output_names, classes, task, dataset (name, sha256, ...), metrics, edgeloop_version, extra.
    """
    arch_info(arch)  # an unknown arch fails before anything is written
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "input_spec": [dict(s) for s in input_spec],
        "output_names": ["reconstruction" if task == "anomaly" else "logits"],
        "classes": list(classes),
        "task": task,
        "dataset": dict(dataset or {}),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "edgeloop_version": __version__,
        "extra": dict(extra or {}),
    }
    dest = Path(path)
    try:
        with atomic_path(dest) as tmp:
            torch.save(ckpt, tmp)
    except OSError as e:
        raise FileError(f"cannot write checkpoint {str(dest)!r}: {e.strerror or e}") from e
    return dest


def _why(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_torch_file(path: str | Path, *, allow_pickle: bool = False) -> Any:
    """``torch.load`` with clear errors; ``allow_pickle`` also reads whole pickled modules
    (which runs code from the file: only for a user's own files)."""
    p = Path(path)
    if not p.exists():
        raise FileError(f"checkpoint {str(p)!r} does not exist")
    if p.is_dir():
        raise FileError(f"checkpoint {str(p)!r} is a directory, expected a file")
    try:
        return torch.load(p, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        if not allow_pickle and "weights only" in str(e).lower():
            raise ModelFormatError(
                f"{str(p)!r} holds pickled Python objects, not an edgeloop checkpoint"
            ) from e
        raise ModelFormatError(
            f"{str(p)!r} is not a PyTorch checkpoint (torch.load failed: {_why(e)})"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise ModelFormatError(
            f"{str(p)!r} is not a PyTorch checkpoint (torch.load failed: {_why(e)})"
        ) from e
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        raise ModelFormatError(
            f"{str(p)!r} pickles a class that cannot be imported here: {e}; "
            "make the module that defines it importable"
        ) from e
    except OSError as e:
        raise FileError(f"cannot read checkpoint {str(p)!r}: {e.strerror or e}") from e
    except Exception as e:  # noqa: BLE001 - a corrupt file can fail torch.load in many ways
        raise ModelFormatError(
            f"{str(p)!r} is not a PyTorch checkpoint (torch.load failed: {_why(e)})"
        ) from e


def check_checkpoint(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ModelFormatError(
            f"{where} is not an edgeloop checkpoint (expected a dict with format "
            f"{CHECKPOINT_FORMAT!r}; make one with `edgeloop train`)"
        )
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise ModelFormatError(f"checkpoint {where} lacks key(s) {', '.join(missing)}")
    return obj


def model_from_checkpoint(ckpt: Mapping[str, Any], where: str) -> nn.Module:
    model = build_model(ckpt["arch"], **ckpt["arch_kwargs"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ModelFormatError(
            f"checkpoint {where}: weights do not fit architecture {ckpt['arch']!r} "
            f"with {ckpt['arch_kwargs']}: {str(e).splitlines()[0]}"
        ) from e
    model.eval()
    return model


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a zoo model from a checkpoint: ``(module in eval mode, metadata without weights)``.

    Reads with ``weights_only=True``: no code from the file runs.
    """
    where = repr(str(path))
    ckpt = check_checkpoint(read_torch_file(path), where)
    model = model_from_checkpoint(ckpt, where)
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta
