"""``edgeloop demo``: the whole loop on embedded defaults, as far as it exists.

profile this machine -> train a CNN on scikit-learn's digits -> export to ONNX with a parity
check -> optimize to int8 within an accuracy budget -> benchmark both -> start a fleet server on
127.0.0.1 (SQLite, local files) -> pack signed, encrypted bundles (fp32, and int8 for CPUs with
VNNI) -> push them to the registry with their lineage -> publish through TUF -> a simulated
fleet of real agents enrolls, downloads, verifies, self-tests and serves -> a staged rollout of
v2 passes its health gates -> a bad v3 fails its gate and every device goes back to v2 from its
known-good slot.

This module sits in the interface layer: it calls every stage's public API and imports each
inside the step that needs it. Every file it writes lands under ``workdir``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop._io import atomic_write_bytes, atomic_write_text
from edgeloop.errors import FleetError, InputError

if TYPE_CHECKING:
    from edgeloop.client import AdminClient

__all__ = ["DemoResult", "DemoStep", "run_demo"]

MODEL = "digits-cnn"
BAD_VERSION = 3
BAD_ERROR_SHARE = 0.3

# (variant name, bundle, requirements the device's profile must meet)
INT8_VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("fp32", "fp32", {}),
    ("int8-avx512vnni", "int8", {"isa": ["avx512_vnni"]}),
    ("int8-avxvnni", "int8", {"isa": ["avx_vnni"]}),
    ("int8-armdot", "int8", {"isa": ["asimddp"]}),
)


@dataclass
class DemoStep:
    name: str
    summary: str
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    workdir: Path
    steps: list[DemoStep] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"workdir": str(self.workdir), "steps": [asdict(s) for s in self.steps]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """``edgeloop server`` in a child process on 127.0.0.1, stopped when the demo ends."""

    def __init__(self, data: Path, poll_interval: float) -> None:
        self.data = data
        self.db_url = f"sqlite:///{data / 'edgeloop.db'}"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / "server.log"
        self.poll_interval = poll_interval
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import httpx

        self.data.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "edgeloop", "server", "--db", self.db_url]
        args += ["--data", str(self.data), "--port", str(self.port)]
        args += ["--poll-interval", str(self.poll_interval)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, EDGELOOP_DEBUG="")
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise FleetError(f"the fleet server exited with {self.proc.returncode}: {tail}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise FleetError(f"the fleet server at {self.url} did not answer /healthz within 60 s")

    @property
    def admin_token(self) -> str:
        return (self.data / "admin-token").read_text().strip()

    def admin(self) -> AdminClient:
        """The admin client for this server (a long timeout: publishing packs bundles)."""
        from edgeloop.client import AdminClient

        return AdminClient(self.url, self.admin_token, timeout_s=120.0)

    def pack(self, model: Path, card: Any, version: int, dest: Path) -> Path:
        """Sign with the fleet's release key, encrypt to its fleet key, verify as a device
        would (against the signed root), and write ``dest`` atomically."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        from edgeloop.bundle import load_public_key, load_signing_key, load_trust, pack, verify

        keys = self.data / "keys"
        fleet_pub = load_public_key(keys / "fleet.pub.pem")
        if not isinstance(fleet_pub, X25519PublicKey):
            raise InputError(f"{keys / 'fleet.pub.pem'} is not an X25519 encryption key")
        sign = load_signing_key(keys / "release.pem")
        blob = pack(model.read_bytes(), card, version, sign, [fleet_pub], name=MODEL)
        verify(blob, load_trust(keys / "root.json"))
        atomic_write_bytes(dest, blob)
        return dest

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def run_demo(
    workdir: str | Path,
    *,
    epochs: int = 5,
    devices: int = 12,
    fresh: bool = True,
    on_step: Callable[[DemoStep], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the loop end to end under ``workdir`` and return what each step measured."""
    if devices < 1:
        raise InputError(f"--devices must be at least 1, got {devices}")
    if epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    work = Path(workdir).resolve()
    if fresh and work.exists():
        if not (work / "demo.json").exists() and any(work.iterdir()):
            raise InputError(
                f"{str(work)!r} exists and is not an earlier demo's folder; "
                "expected an empty or missing directory"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    result = DemoResult(work)
    state: dict[str, Any] = {}

    def step(name: str, fn: Callable[[], tuple[str, dict[str, Any]]]) -> None:
        if on_start:
            on_start(name)
        t0 = time.perf_counter()
        summary, figures = fn()
        s = DemoStep(name, summary, round(time.perf_counter() - t0, 2), figures)
        result.steps.append(s)
        atomic_write_text(work / "demo.json", json.dumps(result.to_dict(), indent=2) + "\n")
        if on_step:
            on_step(s)

    step("profile", lambda: _profile(work, state))
    step("train", lambda: _train(work, state, epochs))
    step("export", lambda: _export(work, state))
    step("optimize", lambda: _optimize(work, state))
    step("benchmark", lambda: _bench(work, state))
    server = _Server(work / "fleet", poll_interval=1.0)
    try:
        step("server", lambda: _start(server))
        step("bundle", lambda: _bundle(work, state, server))
        step("registry", lambda: _registry(state, server))
        step("publish", lambda: _publish(state, server))
        fleet = _Fleet(work, server, devices)
        try:
            step("fleet", lambda: _fleet(fleet, server))
            step("rollout", lambda: _rollout(work, state, server, fleet, 2))
            step("rollback", lambda: _rollout(work, state, server, fleet, BAD_VERSION))
            step("telemetry", lambda: _telemetry(fleet))
        finally:
            fleet.close()
    finally:
        server.stop()
    return result


def _profile(work: Path, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from edgeloop.hardware import profile_device

    prof = profile_device(quick=True)
    prof.save(work / "profile.json")
    state["profile"] = prof
    isa = ", ".join(prof.isa[:6]) or "none seen"
    gops = f"{prof.fp32_gops or 0:.1f} fp32 / {prof.int8_gops or 0:.1f} int8 GOPS"
    return f"{prof.cpu_model}: {prof.cores_logical} cores, {isa}; {gops}", {
        "fp32_gops": prof.fp32_gops,
        "int8_gops": prof.int8_gops,
        "isa": list(prof.isa),
    }


def _train(work: Path, state: dict[str, Any], epochs: int) -> tuple[str, dict[str, Any]]:
    from edgeloop.zoo import train

    res = train("cnn", "digits", epochs, out=work / "digits-cnn.pt", seed=0)
    state["checkpoint"] = res.checkpoint
    acc = res.metrics.get("accuracy", 0.0)
    return f"cnn on digits, {epochs} epochs: test accuracy {acc:.4f}", dict(res.metrics)


def _export(work: Path, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from edgeloop.zoo import export_onnx

    out = work / "digits-cnn.onnx"
    card = export_onnx(state["checkpoint"], out)
    state["onnx"], state["card"] = out, card
    diff = card.extra.get("parity_max_abs_diff", card.metrics.get("parity_max_abs_diff"))
    note = f", parity max |diff| {diff:.2e}" if isinstance(diff, float) else ""
    return f"{out.name} ({card.size_bytes or 0:,} bytes, opset 17, dynamic batch){note}", {
        "sha256": card.sha256
    }


def _optimize(work: Path, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from edgeloop.optimize import optimize

    card = optimize(state["onnx"], "int8", "digits", out_dir=work / "int8", max_drop=0.01)
    state["int8"], state["int8_card"] = work / "int8" / "model.onnx", card
    acc = card.metrics.get("accuracy")
    acc_s = f", accuracy {acc:.4f}" if acc is not None else ""
    return f"int8 QDQ within a 1-point budget{acc_s}; report in int8/report.html", dict(
        card.metrics
    )


def _bench(work: Path, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from edgeloop.data import load_dataset
    from edgeloop.runtime import benchmark

    data = load_dataset("digits", split="test")
    res = benchmark(state["onnx"], threads=1, data=data, compare=state["int8"], min_seconds=1.0)
    other = res.compare
    assert other is not None
    figures = {
        "fp32_p50_ms": res.latency_ms["p50"],
        "int8_p50_ms": other.latency_ms["p50"],
        "fp32_bytes": res.size_bytes,
        "int8_bytes": other.size_bytes,
        "fp32_accuracy": res.metrics.get("accuracy"),
        "int8_accuracy": other.metrics.get("accuracy"),
    }
    atomic_write_text(work / "bench.json", json.dumps(res.to_dict(), indent=2) + "\n")
    size_x = res.size_bytes / max(other.size_bytes, 1)
    return (
        f"fp32 p50 {res.latency_ms['p50']:.3f} ms vs int8 {other.latency_ms['p50']:.3f} ms "
        f"(1 thread); int8 {size_x:.1f}x smaller",
        figures,
    )


def _start(server: _Server) -> tuple[str, dict[str, Any]]:
    server.start()
    return f"edgeloop server on {server.url} (SQLite {server.data / 'edgeloop.db'})", {
        "url": server.url
    }


def _bundle(work: Path, state: dict[str, Any], server: _Server) -> tuple[str, dict[str, Any]]:
    bundles: list[tuple[Path, str, dict[str, Any]]] = []
    paths: dict[str, Path] = {}
    for kind, model, card in (
        ("fp32", state["onnx"], state["card"]),
        ("int8", state["int8"], state["int8_card"]),
    ):
        paths[kind] = server.pack(Path(model), card, 1, work / f"{MODEL}-1-{kind}.elb")
    # int8 pays off where the CPU has 8-bit dot-product instructions; fp32 everywhere else.
    # The director gives each device the most specific variant its reported ISA satisfies.
    for variant, kind, requires in INT8_VARIANTS:
        bundles.append((paths[kind], variant, requires))
    state["bundles"] = bundles
    names = ", ".join(p.name for p in paths.values())
    return f"signed (Ed25519) and encrypted (AES-256-GCM) and verified: {names}", {
        "bundles": [str(p) for p, _, _ in bundles]
    }


def _registry(state: dict[str, Any], server: _Server) -> tuple[str, dict[str, Any]]:
    from edgeloop.registry import Registry

    with Registry(server.db_url, server.data) as reg:
        v = reg.push(state["onnx"], MODEL, card=state["card"], bundles=state["bundles"])
        tree = reg.lineage(f"{MODEL}@{v.version}")
    depth = len(tree.walk())
    return (
        f"{MODEL}@{v.version} pushed with {len(state['bundles'])} variants, lineage of {depth}",
        {
            "version": v.version,
            "lineage_nodes": depth,
        },
    )


def _publish(state: dict[str, Any], server: _Server) -> tuple[str, dict[str, Any]]:
    server.admin().publish(MODEL, 1)
    server.admin().set_desired(MODEL, 1)
    return f"{MODEL}@1 in the TUF repository and desired for the fleet", {}


class _Fleet:
    """A simulated fleet of real agents, running in its own thread while the demo goes on.

    Version 3 is the demo's bad release: the simulator fails ``BAD_ERROR_SHARE`` of its
    inferences, as a regression that only shows on the devices would.
    """

    def __init__(self, work: Path, server: _Server, devices: int) -> None:
        from edgeloop.agent import Simulator, simulated_profiles

        admin = server.admin()
        tokens = [admin.create_token()["token"] for _ in range(devices)]
        self.sim = Simulator(
            server.url,
            work / "devices",
            tokens,
            simulated_profiles("mix", devices),
            poll_interval_s=1.0,
            rps=5.0,
            fault=lambda m: BAD_ERROR_SHARE if m.version == BAD_VERSION else 0.0,
        )
        self.devices = devices
        self.result: Any = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="demo-fleet", daemon=True)

    def _main(self) -> None:
        async def go() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            try:
                self.result = await self.sim.run(3600.0, stop=self._stop)
            finally:
                await self.sim.aclose()

        try:
            asyncio.run(go())
        except BaseException as e:  # reported by stop()
            self.error = e
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)

    def serving(self) -> dict[str, int]:
        return {k: v for k, v in self.sim.serving().items() if k != "none"}

    def wait_serving(self, ref: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.serving().get(ref, 0) < self.devices:
            if self.error is not None or time.monotonic() > deadline:
                raise FleetError(
                    f"only {self.serving().get(ref, 0)} of {self.devices} simulated devices "
                    f"serve {ref} after {timeout_s:.0f} s"
                ) from self.error
            time.sleep(0.25)

    def close(self) -> None:
        """Stop the fleet if it still runs (cleanup after a failed step; errors not raised)."""
        if self._thread.is_alive():
            self._loop_stop()
            self._thread.join(60)

    def _loop_stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def stop(self) -> Any:
        if self._thread.is_alive():
            self._loop_stop()
        self._thread.join(60)
        if self.error is not None:
            raise FleetError(f"the simulated fleet stopped: {self.error}") from self.error
        return self.result


def _fleet(fleet: _Fleet, server: _Server) -> tuple[str, dict[str, Any]]:
    fleet.start()
    fleet.wait_serving(f"{MODEL}@1")
    inventory = {"devices": server.admin().devices()}
    variants: dict[str, int] = {}
    for d in inventory.get("devices", []):
        key = str((d.get("installed") or {}).get("variant", "?"))
        variants[key] = variants.get(key, 0) + 1
    return (
        f"{fleet.devices} agents enrolled, fetched via TUF, verified, self-tested and serve "
        f"{MODEL}@1; variants {variants}",
        {"serving": fleet.serving(), "variants": variants},
    )


def _release(work: Path, state: dict[str, Any], server: _Server, version: int, recipe: str) -> None:
    """A new version made from v1 by ``recipe``, bundled, pushed and published (not desired)."""
    from edgeloop.optimize import optimize
    from edgeloop.registry import Registry

    out = work / f"v{version}-{recipe}"
    card = optimize(state["onnx"], recipe, "digits", out_dir=out)
    path = server.pack(out / "model.onnx", card, version, work / f"{MODEL}-{version}.elb")
    with Registry(server.db_url, server.data) as reg:
        reg.push(out / "model.onnx", MODEL, card=card, version=version, bundles=[(path, "any", {})])
    server.admin().publish(MODEL, version)


def _rollout(
    work: Path, state: dict[str, Any], server: _Server, fleet: _Fleet, version: int
) -> tuple[str, dict[str, Any]]:
    from edgeloop.client import RolloutClient

    recipe = "fused" if version != BAD_VERSION else "fp16"
    _release(work, state, server, version, recipe)
    client = RolloutClient(server.url, server.admin_token)
    r = client.start(
        MODEL,
        version,
        stages=(25, 50, 100),
        soak_s=3.0,
        gates=("error_rate<0.05", "p99_ms<=3*baseline"),
        min_devices=2,
        min_requests=30,
    )
    t0 = time.monotonic()
    r = client.wait(r["id"], ("completed", "rolled_back", "aborted"), timeout_s=300)
    took = time.monotonic() - t0
    events = [str(e["to_state"]) for e in r.get("events", []) if e.get("to_state")]
    why = next(
        (e.get("reason", "") for e in r.get("events", []) if e.get("to_state") == "failed"),
        r.get("reason", ""),
    )
    figures = {"state": r["state"], "seconds": round(took, 1), "events": events}
    if version == BAD_VERSION:
        if r["state"] != "rolled_back":
            raise FleetError(f"the bad v{version} ended {r['state']!r}, expected 'rolled_back'")
        fleet.wait_serving(f"{MODEL}@{version - 1}")
        return (
            f"v{version} ({recipe}; {BAD_ERROR_SHARE:.0%} of its inferences fail on the devices) "
            f"failed its gate at {r['stage_percent']:g}%: {why}; every device back "
            f"on v{version - 1} in {took:.0f} s, from its known-good slot",
            figures,
        )
    if r["state"] != "completed":
        raise FleetError(f"the good v{version} ended {r['state']!r}: {r.get('reason', '')}")
    fleet.wait_serving(f"{MODEL}@{version}")
    return (
        f"v{version} ({recipe}) went 25% -> 50% -> 100% through its gates in {took:.0f} s; "
        f"all {fleet.devices} devices serve it",
        figures,
    )


def _telemetry(fleet: _Fleet) -> tuple[str, dict[str, Any]]:
    res = fleet.stop()
    figures = {
        "inferences": res.inferences,
        "inference_errors": res.inference_errors,
        "installs": res.installs,
        "serving": {k: v for k, v in res.serving.items() if k != "none"},
    }
    return (
        f"{res.inferences} inferences served ({res.inference_errors} failed, all on the bad "
        f"version), {res.installs} installs; now serving {figures['serving']}",
        figures,
    )
