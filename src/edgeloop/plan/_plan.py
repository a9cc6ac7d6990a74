"""``fit_model``: find the cheapest pipeline that makes a model fit a device budget.

The planner lists candidate pipelines in order of expected cost (work and time to run them):
the model as it is, dynamic int8, static int8, int4 weights (models whose MACs are mostly
MatMul/Gemm), channel pruning at rising ratios then int8, distillation into a student that
``edgeloop.search`` found under the budget then int8, and binarized weights. Before anything is
trained the cost model (``analysis.estimate``, through ``search.predict_cost``) prices each one
on the target; a candidate predicted to miss the latency, memory or size limit is *screened*
and never run. The others run in order through ``optimize`` and are measured (accuracy on the
held-out split; latency timed here for ``--target local``, else the cost model on the model
that was produced; size from the file; peak memory from the cost model); the first that holds
the whole budget is chosen and the planner stops. Every rejected candidate keeps its figures
and the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeloop._io import atomic_write_text
from edgeloop.artifacts import DeviceProfile, LineageRef, ModelCard
from edgeloop.errors import BudgetError, EdgeloopError, FileError, InputError
from edgeloop.search import Cost, Limits, load_space, predict_cost, resolve_target
from edgeloop.search import search as run_search

__all__ = ["PRUNE_RATIOS", "Candidate", "FitBudget", "PlanResult", "candidate_names", "fit_model"]

Progress = Callable[[str], None]

PRUNE_RATIOS = (0.3, 0.5, 0.7)


@dataclass(frozen=True)
class FitBudget:
    """What the model must do on the device: limits on latency, RAM and size, an accuracy floor."""

    max_latency_ms: float | None = None
    max_ram_mb: float | None = None
    max_size_kb: float | None = None
    min_accuracy: float | None = None

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            flag = "--" + name.replace("_", "-")
            if v is None:
                continue
            if not isinstance(v, int | float) or not math.isfinite(v):
                raise InputError(f"{flag} must be a finite number, got {v!r}")
            if name == "min_accuracy" and not 0.0 <= v <= 1.0:
                raise InputError(f"{flag} must be in [0, 1], got {v:g}")
            if name != "min_accuracy" and v <= 0:
                raise InputError(f"{flag} must be positive, got {v:g}")
        if all(v is None for v in asdict(self).values()):
            raise InputError(
                "give at least one of --max-latency-ms, --max-ram-mb, --max-size-kb, --min-accuracy"
            )

    @property
    def limits(self) -> Limits:
        return Limits(self.max_latency_ms, self.max_ram_mb, self.max_size_kb)

    def misses(self, fig: dict[str, Any]) -> list[str]:
        """One phrase per limit that the figures ``fig`` break (none: the budget holds)."""
        out: list[str] = []
        lat, mem, size = fig.get("latency_ms"), fig.get("peak_memory_bytes"), fig.get("size_bytes")
        if self.max_latency_ms is not None and lat is not None and lat > self.max_latency_ms:
            out.append(f"latency {lat:.3f} ms > {self.max_latency_ms:g} ms")
        if self.max_ram_mb is not None and mem is not None and mem / 2**20 > self.max_ram_mb:
            out.append(f"peak memory {mem / 2**20:.2f} MB > {self.max_ram_mb:g} MB")
        if self.max_size_kb is not None and size is not None and size / 1024 > self.max_size_kb:
            out.append(f"size {size / 1024:.1f} KB > {self.max_size_kb:g} KB")
        if self.min_accuracy is not None and "accuracy" in fig:
            acc = fig["accuracy"]
            if acc is None or acc < self.min_accuracy:
                shown = "unknown" if acc is None else f"{acc:.4f}"
                out.append(f"accuracy {shown} < {self.min_accuracy:g}")
        return out

    def describe(self) -> str:
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"latency <= {self.max_latency_ms:g} ms")
        if self.max_ram_mb is not None:
            parts.append(f"RAM <= {self.max_ram_mb:g} MB")
        if self.max_size_kb is not None:
            parts.append(f"size <= {self.max_size_kb:g} KB")
        if self.min_accuracy is not None:
            parts.append(f"accuracy >= {self.min_accuracy:g}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass
class Candidate:
    """One pipeline the planner considered, what it predicted and what it measured."""

    name: str
    work: str  # what running it costs: "none", "calibration", "fine-tuning", ...
    predicted: dict[str, Any] | None = None
    measured: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"  # screened, rejected, chosen, failed, not applicable, not tried
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PlanResult:
    target: str
    budget: FitBudget
    source: str
    candidates: tuple[Candidate, ...]
    chosen: Candidate | None
    model: Path | None
    card: ModelCard | None
    report: Path
    seconds: float

    @property
    def spared(self) -> int:
        """Candidates the cost model screened out before any training or quantization."""
        return sum(c.status == "screened" for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "budget": self.budget.to_dict(),
            "source": self.source,
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": None if self.chosen is None else self.chosen.name,
            "model": None if self.model is None else str(self.model),
            "spared_by_cost_model": self.spared,
            "seconds": round(self.seconds, 3),
        }


def _figures(cost: Cost) -> dict[str, Any]:
    return {
        "latency_ms": round(cost.latency_ms, 4),
        "peak_memory_bytes": cost.peak_memory_bytes,
        "size_bytes": cost.size_bytes,
        "energy_mj": cost.energy_mj,
        "macs": cost.macs,
    }


def _scaled(cost: Cost, compute: float, memory: float) -> dict[str, Any]:
    fig = _figures(cost)
    fig["latency_ms"] = round(cost.latency_ms * compute, 4)
    fig["size_bytes"] = int(cost.size_bytes * compute)
    fig["peak_memory_bytes"] = int(cost.peak_memory_bytes * memory)
    fig["macs"] = int(cost.macs * compute)
    if cost.energy_mj is not None:
        fig["energy_mj"] = cost.energy_mj * compute
    return fig


def _gemm_heavy(path: Path, profile: DeviceProfile) -> bool:
    """Whether most of the model's MACs are in MatMul/Gemm kernels (where int4 weights help)."""
    from edgeloop.analysis import estimate

    est = estimate(path, profile)
    gemm = sum(op.macs for op in est.per_op if op.kind == "gemm")
    return est.macs > 0 and gemm / est.macs > 0.5


def candidate_names(
    arch: str | None, gemm_heavy: bool, prune_ratios: tuple[float, ...] = PRUNE_RATIOS
) -> list[tuple[str, str]]:
    """(name, work) of every candidate, in order of expected cost."""
    out = [("fp32", "none"), ("int8-dynamic", "quantize"), ("int8", "calibrate + quantize")]
    if gemm_heavy:
        out.append(("int4", "quantize weights"))
    if arch is not None:
        out += [
            (f"prune{round(r * 100)}-int8", "prune + fine-tune + calibrate") for r in prune_ratios
        ]
        out.append(("distill-int8", "search students + distil + calibrate"))
        if arch != "transformer":
            out.append(("binary", "binarize + train"))
    return out


def _table_bytes(path: Path) -> int:
    """Bytes of the float tables that Gather nodes read (embeddings): dynamic int8 packs them,
    static int8 leaves them float."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    tables = {n.input[0] for n in proto.graph.node if n.op_type == "Gather" and n.input}
    return sum(
        len(t.raw_data) or 4 * len(t.float_data)
        for t in proto.graph.initializer
        if t.name in tables and t.data_type == onnx.TensorProto.FLOAT
    )


def _predict(
    name: str, fp32: Cost, int8: Cost, gemm_heavy: bool, tables: int = 0
) -> dict[str, Any] | None:
    """The cost model's figures for a candidate before it runs (None: priced elsewhere)."""
    if name == "fp32":
        return _figures(fp32)
    if name == "int8-dynamic":  # dynamic int8 quantizes MatMul/Gemm/Gather; convs stay float
        fig = _figures(int8 if gemm_heavy else fp32)
        fig["size_bytes"] = max(1, fig["size_bytes"] - tables * 3 // 4)  # int8 embeddings
        fig["peak_memory_bytes"] = max(1, fig["peak_memory_bytes"] - tables * 3 // 4)
        return fig
    if name == "int8":
        return _figures(int8)
    if name == "int4":  # weights packed further, activations and arithmetic still float
        fig = _figures(fp32)
        fig["size_bytes"] = int8.size_bytes
        fig["peak_memory_bytes"] = int8.peak_memory_bytes
        return fig
    if name.startswith("prune"):
        keep = 1.0 - int(name[5:].split("-")[0]) / 100
        # channel pruning keeps about keep^2 of the MACs and weights, keep of the activations
        return _scaled(int8, keep * keep, keep)
    if name == "binary":  # runs as its float equivalent; ships 1-bit weights (~1/32 of fp32)
        fig = _figures(fp32)
        fig["size_bytes"] = max(1, fp32.size_bytes // 24)
        return fig
    return None  # distillation: the search screens each student with the cost model


def _measure(
    onnx_path: Path, card_metrics: dict[str, Any], profile: DeviceProfile, accuracy: float | None
) -> dict[str, Any]:
    cost = predict_cost(onnx_path, profile)
    fig = _figures(cost)
    fig["size_bytes"] = onnx_path.stat().st_size
    fig["latency_source"] = "cost model"
    if profile.source == "measured" and card_metrics.get("latency_ms_p50"):
        fig["latency_ms"] = round(float(card_metrics["latency_ms_p50"]), 4)
        fig["latency_source"] = "measured here (p50, batch 1, 1 thread)"
    fig["accuracy"] = accuracy
    return fig


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fit_model(
    model: str | Path,
    *,
    target: str | DeviceProfile,
    budget: FitBudget,
    out_dir: str | Path,
    dataset: str | None = None,
    prune_ratios: tuple[float, ...] = PRUNE_RATIOS,
    finetune_epochs: int = 2,
    distill_epochs: int = 3,
    search_trials: int = 8,
    search_epochs: int = 2,
    train_samples: int | None = None,
    eval_samples: int = 1000,
    seed: int = 0,
    keep_work: bool = False,
    progress: Progress | None = None,
) -> PlanResult:
    """Make ``model`` fit ``budget`` on ``target``; see the module doc.

    ``model``: a zoo checkpoint (every candidate), an ``.onnx`` file (the quantization
    candidates only) or a search space name / ``.json`` (the search runs first, under the
    budget, and its chosen model is the starting point). Writes ``model.onnx``,
    ``model_card.json`` (budget and plan in its lineage), ``plan.json`` and ``report.html`` to
    ``out_dir``; raises :class:`BudgetError` (after writing the plan and the report) when no
    candidate fits.
    """
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    counts = {
        "finetune-epochs": finetune_epochs,
        "distill-epochs": distill_epochs,
        "search-trials": search_trials,
        "search-epochs": search_epochs,
    }
    for name, v in counts.items():
        if v < 1:
            raise InputError(f"--{name} must be >= 1, got {v}")
    for r in prune_ratios:
        if not 0.0 < r < 1.0:
            raise InputError(f"prune ratios must be in (0, 1), got {r!r}")
    profile = resolve_target(target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".plan-", dir=out))
    try:
        return _fit(
            model, profile, budget, out, work, dataset, tuple(sorted(prune_ratios)),
            finetune_epochs, distill_epochs, search_trials, search_epochs, train_samples,
            eval_samples, seed, say, t0,
        )  # fmt: skip
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)


def _source(
    model: str | Path, profile: DeviceProfile, budget: FitBudget, work: Path, dataset: str | None,
    search_trials: int, search_epochs: int, train_samples: int | None, seed: int, say: Progress,
) -> tuple[Path, str, dict[str, Any] | None]:  # fmt: skip
    """The starting model (checkpoint or ONNX), how it came, and the checkpoint's metadata."""
    from edgeloop.search import SPACES

    text = str(model)
    is_space = text in SPACES or (text.endswith(".json") and Path(text).is_file())
    if is_space:
        say(f"searching {text} under the budget for a starting model")
        res = run_search(
            load_space(text),
            out_dir=work / "search",
            target=profile,
            dataset=dataset,
            trials=search_trials,
            epochs=search_epochs,
            limits=budget.limits,
            train_samples=train_samples,
            seed=seed,
        )
        if res.checkpoint is None:
            raise BudgetError(
                f"nothing fits the budget ({budget.describe()}) on {profile.name}: the search "
                f"of {text!r} found no architecture within it in {len(res.trials)} trials"
            )
        text = str(res.checkpoint)
    path = Path(text)
    if not path.is_file():
        raise FileError(
            f"model {text!r} is neither a file nor a search space "
            "(mobilenet, transformer, or a space .json)"
        )
    if path.suffix == ".onnx":
        return path, "onnx", None
    from edgeloop.zoo import load_checkpoint

    _, meta = load_checkpoint(path)
    return path, "search" if is_space else "checkpoint", meta


def _fit(
    model: str | Path, profile: DeviceProfile, budget: FitBudget, out: Path, work: Path,
    dataset: str | None, prune_ratios: tuple[float, ...], finetune_epochs: int,
    distill_epochs: int, search_trials: int, search_epochs: int, train_samples: int | None,
    eval_samples: int, seed: int, say: Progress, t0: float,
) -> PlanResult:  # fmt: skip
    from edgeloop.optimize import load_recipe, optimize
    from edgeloop.zoo import export_onnx

    src, how, meta = _source(
        model, profile, budget, work, dataset, search_trials, search_epochs, train_samples,
        seed, say,
    )  # fmt: skip
    arch = None if meta is None else str(meta["arch"])
    ds_meta = {} if meta is None else dict(meta.get("dataset") or {})
    ds_name = dataset or ds_meta.get("name")
    opts = dict(ds_meta.get("options") or {}) if ds_name == ds_meta.get("name") else {}
    if budget.min_accuracy is not None and ds_name is None:
        raise InputError("--min-accuracy needs labelled data: give --dataset for an .onnx model")
    # what optimize trains and calibrates on: the dataset by name, or (generated with options)
    # its train split; accuracy is always scored here, on the test split
    data: Any = ds_name
    test: Any = None
    if ds_name is not None:
        from edgeloop.data import load_dataset

        test = load_dataset(ds_name, "test", seed=seed, **opts)
        if opts:
            data = load_dataset(ds_name, "train", seed=seed, **opts)
    if src.suffix == ".onnx":
        base_onnx = src
    else:
        base_onnx = work / "source.onnx"
        export_onnx(src, base_onnx, check_parity=False)
    fp32 = predict_cost(base_onnx, profile)
    int8 = predict_cost(base_onnx, profile, precision="int8")
    gemm_heavy = _gemm_heavy(base_onnx, profile)
    names = candidate_names(arch, gemm_heavy, prune_ratios)
    tables = _table_bytes(base_onnx)
    candidates = [Candidate(n, w, _predict(n, fp32, int8, gemm_heavy, tables)) for n, w in names]
    chosen: Candidate | None = None
    chosen_dir: Path | None = None
    for cand in candidates:
        if chosen is not None:
            cand.status = "not tried"
            cand.reasons = [f"{chosen.name} already fits"]
            continue
        if cand.predicted is not None:
            miss = budget.misses(cand.predicted)
            if miss:
                cand.status = "screened"
                cand.reasons = [f"predicted {m}" for m in miss]
                say(f"{cand.name}: screened by the cost model ({'; '.join(miss)})")
                continue
        say(f"{cand.name}: running ({cand.work})")
        started = time.perf_counter()
        cdir = work / cand.name
        try:
            onnx_path, metrics = _run(
                cand.name, src, arch, meta, data, ds_name, opts, cdir, profile, budget,
                finetune_epochs, distill_epochs, search_trials, search_epochs, train_samples,
                eval_samples, seed, optimize, load_recipe,
            )  # fmt: skip
        except _NotApplicable as e:
            cand.status, cand.reasons = "not applicable", [str(e)]
            continue
        except _Screened as e:
            cand.status, cand.reasons = "screened", [str(e)]
            cand.seconds = round(time.perf_counter() - started, 3)
            continue
        except EdgeloopError as e:
            cand.status, cand.reasons = "failed", [str(e)]
            cand.seconds = time.perf_counter() - started
            continue
        cand.seconds = round(time.perf_counter() - started, 3)
        acc = _accuracy(onnx_path, test)
        cand.measured = _measure(onnx_path, metrics, profile, None if acc is None else float(acc))
        if "packed_size_bytes" in metrics:  # binary: the packed 1-bit file is what ships
            cand.measured["size_bytes"] = int(metrics["packed_size_bytes"])
            cand.measured["size_source"] = "packed 1-bit weights (model.bin.npz)"
        miss = budget.misses(cand.measured)
        if miss:
            cand.status, cand.reasons = "rejected", [f"measured {m}" for m in miss]
            say(f"{cand.name}: rejected ({'; '.join(miss)})")
        else:
            cand.status, chosen, chosen_dir = "chosen", cand, onnx_path.parent
            say(f"{cand.name}: fits the budget")
    result_model: Path | None = None
    card: ModelCard | None = None
    plan_doc = {
        "target": profile.name,
        "budget": budget.to_dict(),
        "source": {"model": str(model), "how": how},
        "candidates": [c.to_dict() for c in candidates],
        "chosen": None if chosen is None else chosen.name,
    }
    if chosen is not None and chosen_dir is not None:
        result_model = out / "model.onnx"
        shutil.copyfile(chosen_dir / "model.onnx", work / "final.onnx")
        (work / "final.onnx").replace(result_model)
        if (chosen_dir / "model.bin.npz").exists():
            shutil.copyfile(chosen_dir / "model.bin.npz", out / "model.bin.npz")
        card = _card(chosen_dir, result_model, budget, plan_doc, chosen, profile)
        card.save(out / "model_card.json")
    result = PlanResult(
        target=profile.name,
        budget=budget,
        source=f"{how}: {model}",
        candidates=tuple(candidates),
        chosen=chosen,
        model=result_model,
        card=card,
        report=out / "report.html",
        seconds=time.perf_counter() - t0,
    )
    atomic_write_text(out / "plan.json", json.dumps(result.to_dict(), indent=2, default=str))
    from edgeloop.plan._report import write_report

    write_report(result, out / "report.html")
    if chosen is None:
        tried = [c for c in candidates if c.status in ("rejected", "failed")]
        closest = min(tried, key=lambda c: len(c.reasons), default=None)
        near = f"; closest: {closest.name} ({'; '.join(closest.reasons)})" if closest else ""
        raise BudgetError(
            f"nothing fits the budget ({budget.describe()}) on {profile.name}: "
            f"{len(candidates)} candidates, {result.spared} screened by the cost model, "
            f"{len(tried)} run and rejected{near}; see {str(out / 'report.html')!r}"
        )
    return result


def _accuracy(onnx_path: Path, test: Any) -> float | None:
    """Test-split accuracy of the ONNX model (None without labelled classification data)."""
    if test is None or test.y is None or test.task != "classification":
        return None
    from edgeloop.runtime import evaluate

    return float(evaluate(onnx_path, test.inputs, test.y, test.task, threads=1)["accuracy"])


class _NotApplicable(Exception):
    pass


class _Screened(Exception):
    """A candidate whose every variant the cost model ruled out (the student search)."""


def _run(
    name: str, src: Path, arch: str | None, meta: dict[str, Any] | None, data: Any,
    ds_name: str | None, opts: dict[str, Any], cdir: Path, profile: DeviceProfile,
    budget: FitBudget, finetune_epochs: int, distill_epochs: int, search_trials: int,
    search_epochs: int, train_samples: int | None, eval_samples: int, seed: int,
    optimize: Any, load_recipe: Any,
) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Run one candidate; returns its ONNX model and its card's metrics."""
    from edgeloop.artifacts import PassSpec, Recipe

    def run(model_path: Path, recipe: Any) -> tuple[Path, dict[str, Any]]:
        card = optimize(
            model_path, recipe, data, out_dir=cdir, target=profile, eval_samples=eval_samples
        )
        return cdir / "model.onnx", dict(card.metrics)

    if name == "fp32":
        as_is = Recipe("fp32", (PassSpec("preprocess"),), "the model as it is (graph tidied)")
        return run(src, as_is)
    if name in ("int8", "int8-dynamic", "int4"):
        if name == "int8" and data is None:
            raise _NotApplicable("static int8 needs calibration data: give --dataset")
        return run(src, load_recipe(name))
    if ds_name is None or meta is None or arch is None:
        raise _NotApplicable("needs a zoo checkpoint and its labelled dataset")
    if name.startswith("prune"):
        ratio = int(name[5:].split("-")[0]) / 100
        base = load_recipe("prune50-int8")
        prune = PassSpec(
            "prune",
            {**base.passes[0].params, "ratio": ratio, "steps": 1,
             "finetune_epochs": finetune_epochs,
             **({"train_samples": train_samples} if train_samples else {})},
        )  # fmt: skip
        recipe = dataclasses.replace(
            base, name=name, passes=(prune, *base.passes[1:]),
            description=f"prune {ratio:.0%} of channels, fine-tune, static int8",
        )  # fmt: skip
        return run(src, recipe)
    if name == "distill-int8":
        student = _distilled_student(
            src, meta, arch, ds_name, opts, cdir, profile, budget, distill_epochs,
            search_trials, search_epochs, train_samples, seed,
        )  # fmt: skip
        return run(student, load_recipe("int8"))
    if name == "binary":
        return _binary(src, meta, ds_name, opts, cdir, data, finetune_epochs, train_samples,
                       seed, run)  # fmt: skip
    raise _NotApplicable(f"unknown candidate {name!r}")


def _splits(ds_name: str, opts: dict[str, Any], seed: int, train_samples: int | None) -> Any:
    from edgeloop.data import load_dataset

    tr = load_dataset(ds_name, "train", seed=seed, **opts)
    va = load_dataset(ds_name, "val", seed=seed, **opts)
    return (tr.subset(train_samples) if train_samples else tr), va


def _distilled_student(
    src: Path, meta: dict[str, Any], arch: str, ds_name: str, opts: dict[str, Any], cdir: Path,
    profile: DeviceProfile, budget: FitBudget, epochs: int, search_trials: int,
    search_epochs: int, train_samples: int | None, seed: int,
) -> Path:  # fmt: skip
    """A student that the search found under the budget, distilled from the teacher."""
    from edgeloop.optimize import distill
    from edgeloop.zoo import load_checkpoint, save_checkpoint

    space = "transformer" if arch == "transformer" else "mobilenet"
    if meta.get("task") != "classification" or (
        space == "mobilenet" and len(meta["input_spec"][0]["shape"]) != 3
    ):
        raise _NotApplicable("distillation into a searched student needs image or token classes")
    res = run_search(
        space, out_dir=cdir / "search", target=profile, dataset=ds_name, trials=search_trials,
        epochs=search_epochs, limits=budget.limits, train_samples=train_samples, seed=seed,
        dataset_options=opts,
    )  # fmt: skip
    if res.checkpoint is None:
        raise _Screened(
            f"the cost model screened every student the search tried ({len(res.trials)} "
            f"of {space!r}) or none trained in full fits"
        )
    teacher, _ = load_checkpoint(src)
    student, smeta = load_checkpoint(res.checkpoint)
    tr, va = _splits(ds_name, opts, seed, train_samples)
    out = distill(teacher, student, tr, va, epochs=epochs, seed=seed)
    path = cdir / "student.pt"
    save_checkpoint(
        out.model,
        path,
        arch=smeta["arch"],
        arch_kwargs=smeta["arch_kwargs"],
        input_spec=smeta["input_spec"],
        task=smeta["task"],
        classes=smeta.get("classes", ()),
        dataset=smeta.get("dataset"),
        extra={"distilled_from": str(src), "search_trial": res.chosen and res.chosen.number},
    )
    return path


def _binary(
    src: Path, meta: dict[str, Any], ds_name: str, opts: dict[str, Any], cdir: Path, data: Any,
    epochs: int, train_samples: int | None, seed: int, run: Any,
) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Binarized weights: the float-equivalent model runs; the packed 1-bit file ships."""
    from edgeloop.artifacts import PassSpec, Recipe
    from edgeloop.optimize import binarize, save_binary
    from edgeloop.zoo import load_checkpoint, save_checkpoint

    model, _ = load_checkpoint(src)
    tr, va = _splits(ds_name, opts, seed, train_samples)
    res = binarize(model, tr, va, epochs=epochs, seed=seed, max_drop=None)
    cdir.mkdir(parents=True, exist_ok=True)
    shape = [1, *meta["input_spec"][0]["shape"]]
    packed = cdir / "model.bin.npz"
    size = save_binary(res.model, packed, res.details["binarized"], arch=meta["arch"],
                       arch_kwargs=meta["arch_kwargs"], input_shape=shape)  # fmt: skip
    ckpt = cdir / "binary.pt"
    save_checkpoint(
        res.model, ckpt, arch=meta["arch"], arch_kwargs=meta["arch_kwargs"],
        input_spec=meta["input_spec"], task=meta["task"], classes=meta.get("classes", ()),
        dataset=meta.get("dataset"),
    )  # fmt: skip
    recipe = Recipe("binary", (PassSpec("preprocess"),), "binarized weights, float equivalent")
    onnx_path, metrics = run(ckpt, recipe)
    metrics["packed_size_bytes"] = size
    return onnx_path, metrics


def _card(
    cdir: Path, final: Path, budget: FitBudget, plan: dict[str, Any], chosen: Candidate,
    profile: DeviceProfile,
) -> ModelCard:  # fmt: skip
    card = ModelCard.load(cdir / "model_card.json")
    order = " > ".join(c["name"] for c in plan["candidates"] if c["status"] != "not tried")
    lineage = (
        *card.lineage,
        LineageRef(role="budget", sha256=_sha(budget.to_dict()), name=budget.describe()),
        LineageRef(role="plan", sha256=_sha(plan), name=f"{order} (chose {chosen.name})"),
    )
    metrics = dict(card.metrics)
    for key in ("latency_ms", "peak_memory_bytes", "size_bytes", "energy_mj"):
        v = chosen.measured.get(key)
        if v is not None:
            metrics[f"target_{key}"] = float(v)
    new = dataclasses.replace(
        card,
        name=f"{card.name}-fit",
        lineage=lineage,
        metrics=metrics,
        description=f"fits {budget.describe()} on {profile.name} with {chosen.name}",
    )
    new.extra.update(card.extra)
    new.extra["fit"] = {
        "target": profile.name,
        "budget": budget.to_dict(),
        "chosen": chosen.name,
        "candidates": [
            {"name": c["name"], "status": c["status"], "reasons": c["reasons"]}
            for c in plan["candidates"]
        ],
    }
    return new
