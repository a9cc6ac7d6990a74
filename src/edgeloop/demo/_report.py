"""What the demo tells a newcomer beyond its steps' figures.

:func:`variant_report`: which bundle variant each simulated device got and why, and which one
this host would get (the director's own :func:`~edgeloop.fleet.select_variant` decides).
:func:`next_steps`: how to serve the demo's fleet again once the demo has ended, where the
dashboard is and how to sign in, and the commands to try next. Values in, values out.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop.demo._context import BAD_VERSION, MODEL, DemoStep

if TYPE_CHECKING:
    from edgeloop.artifacts import DeviceProfile
    from edgeloop.protocol import Variant

__all__ = ["DOT_PRODUCT_ISA", "NEXT_PORT", "next_steps", "render_next", "variant_report"]

# The ISA features that give a CPU 8-bit dot-product instructions, which int8 kernels need to
# beat fp32 (without them ONNX Runtime's int8 path widens to 16 bits and gains little).
DOT_PRODUCT_ISA = {
    "avx512_vnni": "x86 AVX-512 VNNI",
    "avx_vnni": "x86 AVX-VNNI",
    "asimddp": "Arm dot product",
}

# The port the "serve it again" command uses: `edgeloop server`'s own default.
NEXT_PORT = 8700


def _dot_isa(isa: Sequence[str] | None) -> list[str]:
    have = {str(f).lower() for f in isa or ()}
    return [f for f in DOT_PRODUCT_ISA if f in have]


def _isa_text(isa: Sequence[str]) -> str:
    return ", ".join(isa) if isa else "no 8-bit dot product"


def variant_report(
    devices: Sequence[Mapping[str, Any]],
    host: DeviceProfile | None,
    variants: Sequence[Variant],
) -> tuple[str, dict[str, Any]]:
    """A sentence and figures: per simulated target, its dot-product ISA and the variant its
    devices installed; and the variant this host's own profile would be given.

    ``devices`` are the admin API's inventory rows, ``variants`` the release's variants.
    """
    from edgeloop.fleet import select_variant

    by_target: dict[str, dict[str, Any]] = {}
    for d in devices:
        profile = d.get("profile") or {}
        target = str((d.get("labels") or {}).get("target") or profile.get("name") or "?")
        variant = str((d.get("installed") or {}).get("variant") or "none")
        row = by_target.setdefault(
            target, {"isa": _dot_isa(profile.get("isa")), "devices": 0, "variants": {}}
        )
        row["devices"] += 1
        row["variants"][variant] = row["variants"].get(variant, 0) + 1
    chosen = select_variant(host, variants) if host is not None else None
    host_isa = _dot_isa(host.isa) if host is not None else []
    figures: dict[str, Any] = {
        "targets": dict(sorted(by_target.items())),
        "this_host": {
            "cpu": host.cpu_model if host is not None else None,
            "isa": host_isa,
            "variant": chosen.variant if chosen is not None else None,
        },
    }
    parts = []
    for target, row in figures["targets"].items():
        got = ", ".join(f"{v} x{n}" for v, n in sorted(row["variants"].items()))
        parts.append(f"{target} ({_isa_text(row['isa'])}) -> {got}")
    names = ", ".join(f"{isa} ({what})" for isa, what in DOT_PRODUCT_ISA.items())
    host_text = (
        f"this host ({_isa_text(host_isa)}) would get {chosen.variant}"
        if chosen is not None
        else "this host was not profiled"
    )
    text = (
        "each simulated device reports a built-in target profile, not this host's CPU (all of "
        "them run here, on this host's ONNX Runtime); the director gave each the most specific "
        f"variant its reported ISA allows, int8 only with an 8-bit dot product [{names}]: "
        + "; ".join(parts)
        + f"; {host_text}"
    )
    return text, figures


def next_steps(work: Path, data: Path, db_url: str, steps: Sequence[DemoStep]) -> dict[str, Any]:
    """The command that serves the demo's fleet again, its dashboard, where the admin token
    is, and commands to try against it (argument lists, as ``shlex.join`` prints them)."""
    url = f"http://127.0.0.1:{NEXT_PORT}"
    server = ["edgeloop", "server", "--db", db_url, "--data", str(data)]
    server += ["--port", str(NEXT_PORT)]
    admin = ["--server", url, "--data", str(data)]
    rollback = next((s for s in steps if s.name == "rollback"), None)
    rollout_id = (rollback.figures.get("id") if rollback is not None else None) or 2
    commands = [
        ["edgeloop", "fleet", *admin, "devices"],
        ["edgeloop", "rollout", *admin, "list"],
        ["edgeloop", "rollout", *admin, "status", str(rollout_id)],
        ["edgeloop", "registry", "--db", db_url, "--data", str(data), "lineage", f"{MODEL}@2"],
        [
            "edgeloop", "bench", str(work / f"{MODEL}.onnx"),
            "--compare", str(work / "int8" / "model.onnx"), "--data", "digits",
        ],
    ]  # fmt: skip
    return {
        "server": server,
        "dashboard": f"{url}/dashboard",
        "admin_token": str(data / "admin-token"),
        "bad_rollout": rollout_id,
        "commands": commands,
    }


def render_next(nxt: Mapping[str, Any]) -> list[str]:
    """The lines that end the demo's output."""
    return [
        "The demo's fleet server stopped with the demo; its state is kept. Serve it again with",
        f"  {shlex.join(nxt['server'])}",
        f"then open {nxt['dashboard']} and sign in with the admin token in {nxt['admin_token']}.",
        f"Next, in another terminal (rollout {nxt['bad_rollout']} is v{BAD_VERSION}'s rollback):",
        *(f"  {shlex.join(c)}" for c in nxt["commands"]),
    ]
