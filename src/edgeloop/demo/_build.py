"""Build stages: profile this machine, train, export to ONNX, quantize to int8, benchmark."""

from __future__ import annotations

import json

from edgeloop._io import atomic_write_text
from edgeloop.demo._context import DemoContext, StageResult, need

__all__ = ["benchmark", "export", "optimize", "profile", "train"]


def profile(ctx: DemoContext) -> StageResult:
    from edgeloop.hardware import profile_device

    prof = profile_device(quick=True)
    prof.save(ctx.work / "profile.json")
    ctx.profile = prof
    isa = ", ".join(prof.isa[:6]) or "none seen"
    gops = f"{prof.fp32_gops or 0:.1f} fp32 / {prof.int8_gops or 0:.1f} int8 GOPS"
    return f"{prof.cpu_model}: {prof.cores_logical} cores, {isa}; {gops}", {
        "fp32_gops": prof.fp32_gops,
        "int8_gops": prof.int8_gops,
        "isa": list(prof.isa),
    }


def train(ctx: DemoContext) -> StageResult:
    from edgeloop.zoo import train as train_model

    res = train_model("cnn", "digits", ctx.epochs, out=ctx.work / "digits-cnn.pt", seed=0)
    ctx.checkpoint = res.checkpoint
    acc = res.metrics.get("accuracy", 0.0)
    return f"cnn on digits, {ctx.epochs} epochs: test accuracy {acc:.4f}", dict(res.metrics)


def export(ctx: DemoContext) -> StageResult:
    from edgeloop.zoo import export_onnx

    out = ctx.work / "digits-cnn.onnx"
    card = export_onnx(need(ctx.checkpoint, "the trained checkpoint"), out)
    ctx.onnx, ctx.card = out, card
    diff = card.extra.get("parity_max_abs_diff", card.metrics.get("parity_max_abs_diff"))
    note = f", parity max |diff| {diff:.2e}" if isinstance(diff, float) else ""
    return f"{out.name} ({card.size_bytes or 0:,} bytes, opset 17, dynamic batch){note}", {
        "sha256": card.sha256
    }


def optimize(ctx: DemoContext) -> StageResult:
    from edgeloop.optimize import optimize as optimize_model

    onnx = need(ctx.onnx, "the exported ONNX model")
    card = optimize_model(onnx, "int8", "digits", out_dir=ctx.work / "int8", max_drop=0.01)
    ctx.int8, ctx.int8_card = ctx.work / "int8" / "model.onnx", card
    acc = card.metrics.get("accuracy")
    acc_s = f", accuracy {acc:.4f}" if acc is not None else ""
    return f"int8 QDQ within a 1-point budget{acc_s}; report in int8/report.html", dict(
        card.metrics
    )


def benchmark(ctx: DemoContext) -> StageResult:
    from edgeloop.data import load_dataset
    from edgeloop.runtime import benchmark as bench

    data = load_dataset("digits", split="test")
    res = bench(
        need(ctx.onnx, "the exported ONNX model"),
        threads=1,
        data=data,
        compare=need(ctx.int8, "the int8 model"),
        min_seconds=1.0,
    )
    other = need(res.compare, "the int8 model's benchmark")
    figures = {
        "fp32_p50_ms": res.latency_ms["p50"],
        "int8_p50_ms": other.latency_ms["p50"],
        "fp32_bytes": res.size_bytes,
        "int8_bytes": other.size_bytes,
        "fp32_accuracy": res.metrics.get("accuracy"),
        "int8_accuracy": other.metrics.get("accuracy"),
    }
    atomic_write_text(ctx.work / "bench.json", json.dumps(res.to_dict(), indent=2) + "\n")
    size_x = res.size_bytes / max(other.size_bytes, 1)
    return (
        f"fp32 p50 {res.latency_ms['p50']:.3f} ms vs int8 {other.latency_ms['p50']:.3f} ms "
        f"(1 thread); int8 {size_x:.1f}x smaller",
        figures,
    )
