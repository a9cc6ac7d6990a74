"""``optimize(model, recipe, data)``: run a recipe's passes, measure every step, report, card.

The pipeline resolves the recipe and the data, measures the original model (size, MACs,
latency p50 at batch 1 on one thread, metric and similarity), runs each pass in order (exporting
a PyTorch state to ONNX the first time an ONNX pass needs it), measures each result the same
way, then writes ``model.onnx`` (and ``model.ort`` when a pass made one), ``model_card.json``,
``report.json``, ``report.html`` and ``report.png`` to the output folder. A budget that the final
model misses raises :class:`BudgetError` after everything is written.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.artifacts import DeviceProfile, LineageRef, ModelCard, Recipe, TensorSpec
from edgeloop.errors import BudgetError, FileError, InputError, PassError
from edgeloop.optimize._data import ModelData, load_model_data
from edgeloop.optimize._measure import Budget, Evaluator, Quality
from edgeloop.optimize._model import copy_model, input_specs, load_onnx, model_sha256, model_size
from edgeloop.optimize._passes import ModelState, PassContext, StepResult, get_pass
from edgeloop.optimize._recipes import load_recipe

__all__ = ["optimize"]

Progress = Callable[[str, float], None]
_CALIBRATED = {"quantize"}


def _measure(path: Path, evaluator: Evaluator) -> tuple[dict[str, Any], Quality]:
    row: dict[str, Any] = {"size_bytes": model_size(path)}
    try:
        from edgeloop.analysis import graph_stats

        # the data's own shapes at batch 1: symbolic sequence/image dims get concrete values
        shapes = {k: (1, *v.shape[1:]) for k, v in evaluator.data.inputs.items()}
        try:
            stats = graph_stats(path, input_shapes=shapes)
        except InputError:  # data keyed differently from the graph's inputs: batch 1 only
            stats = graph_stats(path)
        row.update(
            macs=stats.macs if stats.macs_complete else None,
            macs_lower_bound=None if stats.macs_complete else stats.macs,
            params=stats.params,
            nodes=stats.nodes,
        )
    except Exception:  # a graph the static analysis cannot read still gets measured
        row.update(macs=None, params=None, nodes=None)
    q = evaluator.score(path, latency=False)  # timed later, all steps interleaved
    row.update(q.to_dict())
    row["_path"] = path
    return row, q


SLOWER = 0.97  # a step below this speedup vs the original is reported as slower


def _time_interleaved(rows: list[dict[str, Any]], evaluator: Evaluator) -> list[str]:
    """p50 of every step timed interleaved with the original; warnings for slower steps."""
    paths = [r.pop("_path", None) for r in rows]
    timed = [i for i, p in enumerate(paths) if p is not None]
    p50 = evaluator.latencies([paths[i] for i in timed])
    for i, t in zip(timed, p50, strict=True):
        rows[i]["latency_ms_p50"] = t
        rows[i]["latency_timing"] = "interleaved with the original"
    base = rows[0].get("latency_ms_p50")
    slower: list[str] = []
    for r in rows[1:]:
        ms = r.get("latency_ms_p50")
        if not base or not ms or base / ms >= SLOWER:
            continue
        msg = (
            f"slower than the original on this machine: {base / ms:.2f}x "
            f"(p50 {ms:.3f} ms vs {base:.3f} ms, batch 1, {evaluator.threads} thread(s), "
            "timed interleaved)"
        )
        r["warnings"] = [*r.get("warnings", []), msg]
        slower.append(f"{r['step']}: {msg}")
    return slower


def _synthetic(specs: list[Any], n: int = 32, seed: int = 0) -> ModelData:
    """Inputs for models given without data: normal floats, ones for integer inputs."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for s in specs:
        shape = (n, *[d if d is not None else 1 for d in s.shape[1:]])
        if s.shape and s.shape[0] is not None:
            shape = (n * s.shape[0], *shape[1:])
        if s.dtype.kind == "f":
            arrays[s.name] = rng.standard_normal(shape).astype(s.dtype)
        else:
            arrays[s.name] = np.ones(shape, dtype=s.dtype)
    return ModelData("synthetic", "", arrays)


def _initial_state(model: Any, work: Path) -> tuple[ModelState, str]:
    if isinstance(model, ModelState):
        return model, model.arch or "model"
    if isinstance(model, str | Path):
        p = Path(model)
        if not p.exists():
            raise FileError(f"model {str(p)!r} does not exist")
        if p.suffix in (".pt", ".pth", ".ckpt"):
            from edgeloop.optimize._torch_export import state_from_checkpoint

            return state_from_checkpoint(p), p.stem
        return ModelState("onnx", onnx_path=p), p.stem
    if type(model).__module__.startswith("torch") or hasattr(model, "state_dict"):
        return ModelState("torch", torch_model=model), type(model).__name__
    raise FileError(
        f"model must be an .onnx path, a checkpoint, or a torch module; got {type(model).__name__}"
    )


def _scaled(note: Progress, name: str, i: int, n: int) -> Progress:
    """A pass's own progress (0..1) mapped into its slice of the whole recipe."""

    def inner(msg: str, frac: float) -> None:
        note(f"{name}: {msg}", (i + min(max(frac, 0.0), 1.0)) / n)

    return inner


def _to_onnx(state: ModelState, work: Path, data: Any, n: int) -> ModelState:
    if state.kind == "onnx":
        return state
    from edgeloop.optimize._torch_export import export_state

    return export_state(state, work / f"export_{n}.onnx", data)


def optimize(
    model: Any,
    recipe: str | Path | Recipe,
    data: Any = None,
    *,
    out_dir: str | Path,
    metric: str | None = None,
    max_drop: float | None = None,
    min_cosine: float | None = None,
    min_sqnr: float | None = None,
    target: str | DeviceProfile | None = None,
    progress: Progress | None = None,
    eval_samples: int = 512,
    calib_samples: int = 256,
    threads: int = 1,
    keep_work: bool = False,
    keep_faster: bool = False,
) -> ModelCard:
    """Make ``model`` smaller and faster with ``recipe``; measure and report every step.

    ``model``: an .onnx path (external data works), a zoo checkpoint or a torch module.
    ``data``: a dataset name, a Dataset, a ``.npz`` (one array per model input, labels under
    ``y``) or a dict of arrays; needed by static int8 and by labelled budgets.
    ``max_drop``: the labelled metric may drop at most this much (0.005 = 0.5 points);
    ``min_cosine``/``min_sqnr``: per-sample floors on similarity to the original outputs.
    ``keep_faster``: when the result is slower than the original (timed interleaved), write
    the original as ``model.onnx`` instead, and say so (``--recipe auto``).
    Returns the :class:`ModelCard` of ``out_dir/model.onnx``; raises :class:`BudgetError`
    (after writing the best model and the report) when the budget is missed.
    """
    t_start = time.perf_counter()
    rec = load_recipe(recipe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=out))
    budget = Budget(max_drop, min_cosine, min_sqnr)

    def note(msg: str, frac: float) -> None:
        if progress is not None:
            progress(msg, frac)

    try:
        state, name = _initial_state(model, work)
        exported = _to_onnx(state, work, data, 0)
        assert exported.onnx_path is not None
        source = exported.onnx_path
        # a torch model stays torch for the recipe's torch passes (prune, distill ...); the
        # export above is the baseline every step is measured against
        state = exported if state.kind == "onnx" else dataclasses.replace(state, meta=exported.meta)
        source_sha = model_sha256(source)
        specs = input_specs(load_onnx(source, with_weights=False))
        md = (
            load_model_data(data, specs, eval_samples=eval_samples, calib_samples=calib_samples)
            if data is not None
            else _synthetic(specs)
        )
        note("measuring the original model", 0.0)
        evaluator = Evaluator(source, md, metric=metric, threads=threads)
        base_row, base_q = _measure(source, evaluator)
        base_row.update(step="original", seconds=0.0, warnings=[], details={})
        if budget.max_drop is not None:
            budget.shortfall(base_q, base_q)  # fails early when the data has no labels
        ctx = PassContext(
            workdir=work,
            data=data if data is not None else None,
            metric=evaluator.metric,
            progress=progress,
            options={
                "budget": budget,
                "evaluator": evaluator,
                "baseline": base_q,
                "model_data": md if data is not None else None,
                "target": target,
            },
        )
        rows = [base_row]
        used_calibration = False
        ort_path: str | None = None
        for i, spec in enumerate(rec.passes):
            note(f"pass {i + 1}/{len(rec.passes)}: {spec.name}", i / len(rec.passes))
            fn = get_pass(spec.name)
            ctx.progress = _scaled(note, spec.name, i, len(rec.passes))
            ctx.workdir = work / f"{i + 1:02d}_{spec.name}"
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            if fn.input_kind == "onnx":
                state = _to_onnx(state, ctx.workdir, data, i + 1)
            t0 = time.perf_counter()
            try:
                state, result = fn(state, spec.params, ctx)
            except PassError:
                raise
            except (OSError, ValueError, RuntimeError) as e:
                raise PassError(f"pass {spec.name!r} (#{i + 1}) failed: {e}") from e
            result.seconds = time.perf_counter() - t0
            used_calibration |= spec.name in _CALIBRATED
            ort_path = result.details.pop("ort_path", ort_path) if spec.name == "fuse" else None
            rows.append(_step_row(result, state, evaluator, work, i + 1, data))
        state = _to_onnx(state, work, data, len(rec.passes) + 1)
        assert state.onnx_path is not None
        note("timing every step interleaved with the original", 0.99)
        card_warnings = _time_interleaved(rows, evaluator)
        chosen = state.onnx_path
        base_ms, last_ms = rows[0].get("latency_ms_p50"), rows[-1].get("latency_ms_p50")
        if keep_faster and base_ms and last_ms and base_ms / last_ms < SLOWER:
            chosen, ort_path = source, None
            why = "kept the original model: the optimized one was slower on this machine"
            kept = dict(rows[0], step="kept original", warnings=[why], details={}, seconds=0.0)
            rows.append(kept)
            card_warnings.append(why)
        final = copy_model(chosen, out / "model.onnx")
        if ort_path is not None:
            shutil.copyfile(ort_path, out / "model.ort")
        final_q = evaluator.score(final, latency=False)
        final_q.latency_ms_p50 = rows[-1].get("latency_ms_p50")
        miss = budget.shortfall(final_q, base_q) if budget else {}
        lineage = [LineageRef(role="source_model", sha256=source_sha, name=str(name))]
        lineage.append(LineageRef(role="recipe", sha256=rec.digest(), name=rec.name))
        if used_calibration and md.calib_sha256:
            lineage.append(
                LineageRef(role="calibration_data", sha256=md.calib_sha256, name=md.name)
            )
        if md.sha256 and md.name != "synthetic":
            lineage.append(LineageRef(role="dataset", sha256=md.sha256, name=md.name))
        card = _card(final, name, rec, md, rows, base_q, final_q, lineage)
        if card_warnings:
            card.extra["warnings"] = card_warnings
        card.save(out / "model_card.json")
        from edgeloop.optimize._report import write_report

        write_report(out, card, rows, budget, miss, time.perf_counter() - t_start, md.name)
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    if miss:
        raise BudgetError(
            f"budget not met: {budget.describe(miss)}; the best model found was written to "
            f"{str(out / 'model.onnx')!r} (see {str(out / 'report.html')!r})"
        )
    return card


def _step_row(
    result: StepResult, state: ModelState, evaluator: Evaluator, work: Path, i: int, data: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "step": result.name,
        "seconds": round(result.seconds, 3),
        "warnings": result.warnings,
        "details": result.details,
        "params": result.params,
    }
    if state.kind == "onnx" and state.onnx_path is not None:
        measured, _ = _measure(state.onnx_path, evaluator)
        row.update(measured)
    else:  # a torch state: measure its export
        onnx_state = _to_onnx(state, work, data, 1000 + i)
        assert onnx_state.onnx_path is not None
        measured, _ = _measure(onnx_state.onnx_path, evaluator)
        row.update(measured)
    return row


def _card(
    final: Path,
    name: str,
    rec: Recipe,
    md: ModelData,
    rows: list[dict[str, Any]],
    base: Quality,
    q: Quality,
    lineage: list[LineageRef],
) -> ModelCard:
    proto = load_onnx(final, with_weights=False)
    last, first = rows[-1], rows[0]
    metrics: dict[str, float] = {}
    if q.metric is not None and q.metric_name:
        metrics[q.metric_name] = q.metric
        if base.metric is not None:
            metrics[f"{q.metric_name}_original"] = base.metric
    for key in ("cosine_min", "cosine_mean", "sqnr_min_db", "sqnr_mean_db"):
        v = getattr(q, key)
        if v is not None:
            metrics[key] = round(float(v), 6)
    if last.get("latency_ms_p50"):
        metrics["latency_ms_p50"] = round(float(last["latency_ms_p50"]), 4)
        if first.get("latency_ms_p50"):
            metrics["speedup"] = round(
                float(first["latency_ms_p50"]) / float(last["latency_ms_p50"]), 3
            )
    metrics["size_ratio"] = round(first["size_bytes"] / max(1, last["size_bytes"]), 3)
    outputs = tuple(
        TensorSpec(
            name=o.name,
            dtype=str(o.type.tensor_type.elem_type),
            shape=tuple(d.dim_value or d.dim_param or None for d in o.type.tensor_type.shape.dim),
        )
        for o in proto.graph.output
    )
    return ModelCard(
        name=f"{name}-{rec.name}",
        sha256=model_sha256(final),
        format="onnx",
        task=md.task or "classification",
        size_bytes=model_size(final),
        params=last.get("params"),
        macs=last.get("macs"),
        inputs=tuple(s.to_tensor_spec() for s in input_specs(proto)),
        outputs=outputs,
        labels=md.classes,
        dataset=None if md.name == "synthetic" else md.name,
        metrics=metrics,
        lineage=tuple(lineage),
        recipe=rec,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        description=rec.description,
    )
