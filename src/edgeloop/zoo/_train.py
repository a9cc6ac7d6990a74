"""``train``: build a zoo model for a dataset, fit it, score it on the test split, save it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeloop.data import BUILTIN, Dataset, load_dataset
from edgeloop.errors import DataError
from edgeloop.zoo._architectures import arch_info, build_model, kwargs_for
from edgeloop.zoo._augment import augmentation, augmentation_name
from edgeloop.zoo._checkpoint import input_spec_of, save_checkpoint
from edgeloop.zoo._fit import FitResult, Progress, evaluate_model, fit, predict, primary_metric

__all__ = ["TrainResult", "default_threads", "train"]


def default_threads() -> int:
    """Threads for torch: at most 4, and never more than the machine has."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class TrainResult:
    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any]
    dataset: str
    metrics: dict[str, float]  # on the test split
    fit: FitResult
    checkpoint: Path | None

    @property
    def metric_name(self) -> str:
        return primary_metric(self.task)

    @property
    def metric(self) -> float:
        return self.metrics[self.metric_name]

    @property
    def task(self) -> str:
        return arch_info(self.arch).task


def _anomaly_threshold(model: nn.Module, val: Dataset) -> float:
    """The 99th percentile of reconstruction error on normal validation data."""
    x = next(iter(val.inputs.values()))
    err = ((predict(model, val) - x) ** 2).reshape(len(x), -1).mean(axis=1)
    return float(np.quantile(err, 0.99))


def train(
    arch: str,
    dataset: str | Path | None = None,
    epochs: int | None = None,
    *,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
    dataset_options: dict[str, Any] | None = None,
    augment: str | None = None,
    **arch_kwargs: Any,
) -> TrainResult:
    """Build ``arch`` for ``dataset`` (default: the arch's own), fit, test, and save to ``out``.

    ``arch_kwargs`` override the builder's arguments (e.g. ``width=0.5``); channels, classes and
    sizes come from the dataset. The metrics are on the test split (accuracy and macro_f1, or
    roc_auc for anomaly). The checkpoint is written atomically only when ``out`` is given.
    ``augment`` (``shift``, ``flip``, ``shift+flip``) transforms the training batches.
    """
    info = arch_info(arch)
    augmentation(augment)  # refused before the data are loaded
    torch.set_num_threads(threads or default_threads())
    ds_name = dataset if dataset is not None else info.default_dataset
    opts = dict(dataset_options or {})
    source = str(ds_name)
    if source not in BUILTIN or isinstance(ds_name, Path):
        opts.setdefault("task", info.task)  # a user's file is read for the arch's task
        source = str(Path(ds_name).expanduser().resolve())
    tr = load_dataset(ds_name, "train", seed=seed, **opts)
    va = load_dataset(ds_name, "val", seed=seed, **opts)
    te = load_dataset(ds_name, "test", seed=seed, **opts)
    if tr.task != info.task:
        raise DataError(
            f"architecture {arch!r} is for {info.task} data; dataset {tr.name!r} is {tr.task}"
        )
    kwargs = {**kwargs_for(arch, tr), **arch_kwargs}
    torch.manual_seed(seed)
    model = build_model(arch, **kwargs)
    result = fit(
        model,
        tr,
        va,
        epochs=epochs or info.epochs,
        lr=lr or info.lr,
        batch_size=batch_size or info.batch_size,
        progress=progress,
        seed=seed,
        augment=augment,
    )
    metrics = evaluate_model(model, te)
    extra: dict[str, Any] = {"fit": {"epochs": result.epochs, "seconds": result.seconds}}
    if augmentation_name(augment):
        extra["fit"]["augment"] = augmentation_name(augment)
    if info.task == "anomaly" and len(va):
        extra["threshold"] = _anomaly_threshold(model, va)
    path = None
    if out is not None:
        path = save_checkpoint(
            model,
            out,
            arch=arch,
            arch_kwargs=kwargs,
            input_spec=input_spec_of(tr.input_names, tr.shapes(), tr.dtypes()),
            task=info.task,
            classes=tr.classes,
            dataset={
                "name": tr.name,
                "source": source,
                "sha256": tr.sha256,
                "test_sha256": te.sha256,
                "seed": seed,
                "options": opts,
            },
            metrics=metrics,
            extra=extra,
        )
    return TrainResult(model, arch, kwargs, tr.name, metrics, result, path)
