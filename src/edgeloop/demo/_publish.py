"""Serve stages: start the fleet server, pack signed bundles, push them to the registry,
publish through TUF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeloop.demo._context import MODEL, DemoContext, StageResult, need
from edgeloop.demo._server import DemoServer

__all__ = ["INT8_VARIANTS", "bundle", "publish", "push", "start_server"]

# (variant name, bundle, requirements the device's profile must meet)
INT8_VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("fp32", "fp32", {}),
    ("int8-avx512vnni", "int8", {"isa": ["avx512_vnni"]}),
    ("int8-avxvnni", "int8", {"isa": ["avx_vnni"]}),
    ("int8-armdot", "int8", {"isa": ["asimddp"]}),
)


def start_server(ctx: DemoContext) -> StageResult:
    server = ctx.server = DemoServer(ctx.work / "fleet", poll_interval=1.0)
    server.start()
    where = f"SQLite {server.data / 'edgeloop.db'}"
    return f"edgeloop server on {server.url} (TLS with its own CA; {where})", {"url": server.url}


def bundle(ctx: DemoContext) -> StageResult:
    server = need(ctx.server, "the fleet server")
    paths: dict[str, Path] = {}
    for kind, model, card in (
        ("fp32", ctx.onnx, ctx.card),
        ("int8", ctx.int8, ctx.int8_card),
    ):
        dest = ctx.work / f"{MODEL}-1-{kind}.elb"
        paths[kind] = server.pack(Path(need(model, f"the {kind} model")), card, 1, dest)
    # int8 pays off where the CPU has 8-bit dot-product instructions; fp32 everywhere else.
    # The director gives each device the most specific variant its reported ISA satisfies.
    ctx.bundles = [(paths[kind], variant, requires) for variant, kind, requires in INT8_VARIANTS]
    # One entry per bundle file: the int8 file serves three variants (one per dot-product ISA),
    # so listing ctx.bundles as it is would name that file three times.
    listed = [
        {
            "file": str(path),
            "kind": kind,
            "variants": {v: req for v, k, req in INT8_VARIANTS if k == kind},
        }
        for kind, path in paths.items()
    ]
    names = ", ".join(p.name for p in paths.values())
    return f"signed (Ed25519) and encrypted (AES-256-GCM) and verified: {names}", {
        "bundles": listed
    }


def push(ctx: DemoContext) -> StageResult:
    from edgeloop.registry import Registry

    server = need(ctx.server, "the fleet server")
    with Registry(server.db_url, server.data) as reg:
        onnx = need(ctx.onnx, "the exported ONNX model")
        v = reg.push(onnx, MODEL, card=ctx.card, bundles=ctx.bundles)
        tree = reg.lineage(f"{MODEL}@{v.version}")
    depth = len(tree.walk())
    return (
        f"{MODEL}@{v.version} pushed with {len(ctx.bundles)} variants, lineage of {depth}",
        {
            "version": v.version,
            "lineage_nodes": depth,
        },
    )


def publish(ctx: DemoContext) -> StageResult:
    admin = need(ctx.server, "the fleet server").admin()
    admin.publish(MODEL, 1)
    admin.set_desired(MODEL, 1)
    return f"{MODEL}@1 in the TUF repository and desired for the fleet", {}
