"""``search``: hardware-aware architecture search with Optuna over a :class:`SearchSpace`.

The study is multi-objective (maximise validation accuracy, minimise latency on the target) with
the budget as constraints (``trial.set_constraint``: latency, peak memory and size minus their
limits; a trial is feasible when all are <= 0). Optuna 5 cannot prune multi-objective trials, so
bad trials stop early by two rules of our own, both recorded on the trial:

1. *screened*: the cost model predicts the budget is missed; the trial is never trained.
2. *stopped* (multi-fidelity): every trained trial first trains ``short_epochs``; one whose
   short-training accuracy is below the median of the earlier trials' short-training accuracy
   (once at least ``min_stop_trials`` of them exist) stops there; the others go on to
   ``epochs`` in all and are *full* trials. Only full trials make the Pareto front.

Workers share a study through its storage: a journal file (the default, ``out_dir/study.journal``;
several local processes may append to it) or an RDB URL such as ``postgresql://...`` for
workers on several machines. Each full trial's weights are a zoo checkpoint under
``out_dir/trials``; the chosen model (the most accurate feasible full trial) is scored on the
test split and written to ``out_dir/model.pt``, with the front as ``front.json`` and
``front.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop._io import atomic_write_text
from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import DataError, InputError
from edgeloop.search._cost import Cost, measure_latency_ms, predict_cost
from edgeloop.search._space import SearchSpace, load_space

__all__ = [
    "STRATEGY",
    "Limits",
    "SearchResult",
    "TrialRecord",
    "pareto_front",
    "rank_correlation",
    "resolve_target",
    "search",
]

STRATEGY = (
    "multi-objective (accuracy, latency) TPE with the budget as trial constraints; "
    "cost-model screening before training and multi-fidelity early stopping "
    "(short training first, below-median trials stop there)"
)

Progress = Callable[["TrialRecord"], None]


@dataclass(frozen=True)
class Limits:
    """A deployment budget: any of latency (ms), peak memory (MB) and model size (KB)."""

    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    max_size_kb: float | None = None

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if v is not None and (not math.isfinite(v) or v <= 0):
                raise InputError(f"{name.replace('_', '-')} must be a positive number, got {v!r}")

    def excess(self, cost: Cost) -> dict[str, float]:
        """Each limit -> how far ``cost`` is over it (<= 0 when it holds), in the limit's unit."""
        out: dict[str, float] = {}
        if self.max_latency_ms is not None:
            out["latency_ms"] = cost.latency_ms - self.max_latency_ms
        if self.max_memory_mb is not None:
            out["memory_mb"] = cost.peak_memory_bytes / 2**20 - self.max_memory_mb
        if self.max_size_kb is not None:
            out["size_kb"] = cost.size_bytes / 1024 - self.max_size_kb
        return out

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a study, as the search reports it."""

    number: int
    params: dict[str, Any]
    arch_kwargs: dict[str, Any]
    # "full", "stopped" (short training only), "screened" (never trained) or "repeat" (a point
    # an earlier trial already scored: its figures, no training)
    state: str
    accuracy: float | None  # validation accuracy at the trial's last fidelity
    short_accuracy: float | None
    cost: dict[str, Any]
    excess: dict[str, float]
    checkpoint: str | None = None
    seconds: float = 0.0
    worker: int = 0

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.excess.values())

    @property
    def latency_ms(self) -> float:
        return float(self.cost["latency_ms"])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "feasible": self.feasible}


@dataclass(frozen=True)
class SearchResult:
    study_name: str
    storage: str
    space: dict[str, Any]
    target: str
    dataset: str
    limits: Limits
    trials: tuple[TrialRecord, ...]
    front: tuple[TrialRecord, ...]
    chosen: TrialRecord | None
    checkpoint: Path | None
    test_metrics: dict[str, float] = field(default_factory=dict)
    strategy: str = STRATEGY
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "space": self.space,
            "target": self.target,
            "dataset": self.dataset,
            "limits": self.limits.to_dict(),
            "strategy": self.strategy,
            "trials": [t.to_dict() for t in self.trials],
            "front": [t.number for t in self.front],
            "chosen": None if self.chosen is None else self.chosen.number,
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "test_metrics": self.test_metrics,
            "seconds": round(self.seconds, 3),
        }


def resolve_target(target: str | DeviceProfile) -> DeviceProfile:
    """A profile: ``local`` measures this machine (quick, one thread), else a built-in target
    name or alias, or a profile JSON file."""
    if isinstance(target, DeviceProfile):
        return target
    from edgeloop.hardware import load_target, profile_device

    if str(target).lower() in ("local", "this", "here"):
        return profile_device(quick=True, threads=1)
    return load_target(target)


def pareto_front(trials: list[TrialRecord] | tuple[TrialRecord, ...]) -> tuple[TrialRecord, ...]:
    """The feasible full trials no other one beats on both accuracy and latency, by latency."""
    pool = [t for t in trials if t.state == "full" and t.feasible and t.accuracy is not None]
    front = []
    for t in pool:
        acc = t.accuracy or 0.0
        dominated = any(
            (o.accuracy or 0.0) >= acc
            and o.latency_ms <= t.latency_ms
            and ((o.accuracy or 0.0) > acc or o.latency_ms < t.latency_ms)
            for o in pool
        )
        if not dominated:
            front.append(t)
    return tuple(sorted(front, key=lambda t: (t.latency_ms, t.number)))


def rank_correlation(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    """Spearman's rank correlation of two equally long samples (ties get their mean rank)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise InputError(f"rank correlation needs two samples of equal length >= 2, got {x.shape}")

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):  # ties: the mean of their ranks
            sel = v == value
            r[sel] = r[sel].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _storage(storage: str | None, out: Path) -> tuple[Any, str]:
    """An Optuna storage and its description: a journal file or an RDB URL."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if storage and "://" in storage:
        scheme = storage.split("://", 1)[0].lower()
        if not scheme.startswith(("postgresql", "sqlite", "mysql")):
            raise InputError(
                f"--storage {storage!r}: expected a journal file path or a postgresql://, "
                "mysql:// or sqlite:/// URL"
            )
        return optuna.storages.RDBStorage(storage), storage.split("@")[-1]
    path = Path(storage.removeprefix("journal:") if storage else out / "study.journal")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path))), str(path)


def _export(model: Any, sample: dict[str, np.ndarray], dest: Path) -> None:
    import torch

    from edgeloop.zoo import torch_to_onnx

    args = tuple(torch.from_numpy(np.ascontiguousarray(v[:1])) for v in sample.values())
    torch_to_onnx(model.eval(), args, dest, input_names=list(sample), output_names=["output"])


def _record(t: Any) -> TrialRecord:
    a = t.user_attrs
    return TrialRecord(
        number=int(t.number),
        params=dict(t.params),
        arch_kwargs=dict(a.get("arch_kwargs", {})),
        state=str(a.get("state", "unknown")),
        accuracy=None if a.get("accuracy") is None else float(a["accuracy"]),
        short_accuracy=None if a.get("short_accuracy") is None else float(a["short_accuracy"]),
        cost=dict(a.get("cost") or {}),
        excess={k: float(v) for k, v in (a.get("excess") or {}).items()},
        checkpoint=a.get("checkpoint"),
        seconds=float(a.get("seconds", 0.0)),
        worker=int(a.get("worker", 0)),
    )


def search(
    space: str | Path | SearchSpace,
    *,
    out_dir: str | Path,
    target: str | DeviceProfile = "local",
    dataset: str | None = None,
    trials: int = 20,
    limits: Limits | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    epochs: int = 3,
    short_epochs: int = 1,
    min_stop_trials: int = 3,
    train_samples: int | None = None,
    batch_size: int | None = None,
    measure: bool = False,
    seed: int = 0,
    worker: int = 0,
    threads: int | None = None,
    dataset_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Search ``space`` for models that fit ``limits`` on ``target``; see the module doc.

    ``trials`` is this worker's share: several workers (``worker`` 0, 1, ... for distinct
    sampler seeds) on one ``storage`` and ``study_name`` fill one study. ``measure`` times each
    candidate on this machine instead of predicting its latency (only meaningful for
    ``target="local"``). ``train_samples`` trains on the first N training samples only;
    ``batch_size`` replaces the architecture's default (smaller batches give more optimizer
    steps per epoch, which short trials on small data need).
    """
    import optuna
    import torch

    from edgeloop.data import load_dataset
    from edgeloop.zoo import arch_info as zoo_arch_info
    from edgeloop.zoo import (
        evaluate_model,
        fit,
        input_spec_of,
        kwargs_for,
        load_checkpoint,
        save_checkpoint,
    )

    t0 = time.perf_counter()
    sp = load_space(space)
    lim = limits or Limits()
    for name, v in (("trials", trials), ("epochs", epochs), ("short-epochs", short_epochs)):
        if v < 1:
            raise InputError(f"--{name} must be >= 1, got {v}")
    if short_epochs > epochs:
        raise InputError(f"--short-epochs ({short_epochs}) must not exceed --epochs ({epochs})")
    if train_samples is not None and train_samples < 2:
        raise InputError(f"--train-samples must be >= 2, got {train_samples}")
    if worker < 0:
        raise InputError(f"--worker must be >= 0, got {worker}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    profile = resolve_target(target)
    info = zoo_arch_info(sp.arch)
    batch = batch_size or info.batch_size
    ds_name = dataset or sp.default_dataset
    opts = dict(dataset_options or {})
    tr = load_dataset(ds_name, "train", seed=seed, **opts)
    va = load_dataset(ds_name, "val", seed=seed, **opts)
    if tr.task != "classification":
        raise DataError(f"search scores accuracy; dataset {tr.name!r} is {tr.task}")
    if train_samples is not None:
        tr = tr.subset(train_samples)
    base = kwargs_for(sp.arch, tr)
    out = Path(out_dir)
    store, store_desc = _storage(storage, out)  # a bad --storage is refused before OUT exists
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials").mkdir(exist_ok=True)
    name = study_name or f"{sp.name}-{tr.name}-{profile.name}"
    if threads:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed * 1000 + worker, n_startup_trials=5)
    study = optuna.create_study(
        storage=store,
        sampler=sampler,
        study_name=name,
        directions=["maximize", "minimize"],
        load_if_exists=True,
    )
    setup = {
        "space": sp.to_dict(),
        "dataset": tr.name,
        "target": profile.name,
        "limits": lim.to_dict(),
        "epochs": [short_epochs, epochs],
        "batch_size": batch,
        "measure": measure,
    }
    known = study.user_attrs.get("setup")
    if known is None:
        study.set_user_attr("setup", setup)
    elif known != json.loads(json.dumps(setup)):
        raise InputError(
            f"study {name!r} in {store_desc!r} was started with another setup ({known}); "
            "give another --study name or the same options"
        )
    sample = tr.subset(1).inputs

    def objective(trial: Any) -> tuple[float, float]:
        started = time.perf_counter()
        params = sp.sample(trial)
        kw = sp.arch_kwargs(params, base)
        trial.set_user_attr("arch_kwargs", kw)
        trial.set_user_attr("worker", worker)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.params == params and t.values is not None:  # the same point again: reuse it
                for key in ("cost", "excess", "short_accuracy", "accuracy"):
                    trial.set_user_attr(key, t.user_attrs.get(key))
                for key, v in t.user_attrs.get("excess", {}).items():
                    trial.set_constraint(key, v)
                trial.set_user_attr("state", "repeat")
                trial.set_user_attr("repeat_of", t.number)
                return float(t.values[0]), float(t.values[1])
        torch.manual_seed(seed + trial.number)
        model = info.builder(**kw)
        with tempfile.TemporaryDirectory(prefix="edgeloop-search-") as tmp:
            onnx_path = Path(tmp) / "candidate.onnx"
            _export(model, sample, onnx_path)
            cost = predict_cost(
                onnx_path, profile, input_shapes={k: (1, *v.shape[1:]) for k, v in sample.items()}
            )
            if measure:
                ms = measure_latency_ms(onnx_path, threads=threads or 1)
                cost = dataclasses.replace(cost, latency_ms=ms, energy_mj=None, source="measured")
        excess = lim.excess(cost)
        trial.set_user_attr("cost", cost.to_dict())
        trial.set_user_attr("excess", excess)
        for key, v in excess.items():
            trial.set_constraint(key, v)
        acc: float = 0.0
        if any(v > 0 for v in excess.values()):
            state, short_acc = "screened", None
        else:
            fit(
                model,
                tr,
                va,
                epochs=short_epochs,
                lr=info.lr,
                batch_size=batch,
                seed=seed + trial.number,
            )
            short_acc = float(evaluate_model(model, va)["accuracy"])
            trial.set_user_attr("short_accuracy", short_acc)
            acc, state = short_acc, "full"
            if epochs > short_epochs:
                earlier = [
                    float(t.user_attrs["short_accuracy"])
                    for t in study.get_trials(
                        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
                    )
                    if t.user_attrs.get("short_accuracy") is not None
                ]
                if len(earlier) >= min_stop_trials and short_acc < float(np.median(earlier)):
                    state = "stopped"
                else:
                    fit(
                        model,
                        tr,
                        va,
                        epochs=epochs - short_epochs,
                        lr=info.lr,
                        batch_size=batch,
                        seed=seed + trial.number + 7919,
                    )
                    acc = float(evaluate_model(model, va)["accuracy"])
            if state == "full":
                ckpt = out / "trials" / f"{name}-{trial.number:04d}.pt"
                save_checkpoint(
                    model,
                    ckpt,
                    arch=sp.arch,
                    arch_kwargs=kw,
                    input_spec=input_spec_of(tr.input_names, tr.shapes(), tr.dtypes()),
                    task=tr.task,
                    classes=tr.classes,
                    dataset={"name": tr.name, "sha256": tr.sha256, "seed": seed, "options": opts},
                    metrics={"val_accuracy": acc},
                    extra={"search": {"study": name, "trial": trial.number, "params": params}},
                )
                trial.set_user_attr("checkpoint", str(ckpt))
        trial.set_user_attr("state", state)
        trial.set_user_attr("accuracy", acc if state != "screened" else None)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        return acc, cost.latency_ms

    def after(study_: Any, frozen: Any) -> None:
        if progress is not None and frozen.state == optuna.trial.TrialState.COMPLETE:
            progress(_record(frozen))

    study.optimize(objective, n_trials=trials, callbacks=[after])
    done = [
        _record(t)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ]
    front = pareto_front(done)
    feasible = [t for t in done if t.state == "full" and t.feasible and t.checkpoint]
    chosen = max(feasible, key=lambda t: (t.accuracy or 0.0, -t.latency_ms), default=None)
    checkpoint: Path | None = None
    test_metrics: dict[str, float] = {}
    if chosen is not None and chosen.checkpoint and Path(chosen.checkpoint).exists():
        te = load_dataset(ds_name, "test", seed=seed, **opts)
        model, meta = load_checkpoint(chosen.checkpoint)
        test_metrics = evaluate_model(model, te)
        checkpoint = out / "model.pt"
        save_checkpoint(
            model,
            checkpoint,
            arch=meta["arch"],
            arch_kwargs=meta["arch_kwargs"],
            input_spec=meta["input_spec"],
            task=meta["task"],
            classes=meta.get("classes", ()),
            dataset={**meta.get("dataset", {}), "test_sha256": te.sha256},
            metrics=test_metrics,
            extra={
                "search": {
                    "study": name,
                    "storage": store_desc,
                    "trial": chosen.number,
                    "params": chosen.params,
                    "target": profile.name,
                    "cost": chosen.cost,
                    "limits": lim.to_dict(),
                    "val_accuracy": chosen.accuracy,
                }
            },
        )
    result = SearchResult(
        study_name=name,
        storage=store_desc,
        space=sp.to_dict(),
        target=profile.name,
        dataset=tr.name,
        limits=lim,
        trials=tuple(done),
        front=front,
        chosen=chosen,
        checkpoint=checkpoint,
        test_metrics=test_metrics,
        seconds=time.perf_counter() - t0,
    )
    atomic_write_text(out / "front.json", json.dumps(result.to_dict(), indent=2, default=str))
    from edgeloop.search._plot import plot_front

    plot_front(result, out / "front.png")
    return result
