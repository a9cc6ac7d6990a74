"""Rollout benchmark: staged rollouts on one ``edgeloop server`` with N simulated agents.

On loopback, with every device a real agent (``edgeloop.agent.Simulator``) and the server a
real ``edgeloop server`` process (SQLite):

* a **good** version through four stages (1, 10, 50, 100 %) with a short soak: the time until
  the rollout completes and every device serves it;
* a **bad** version (the simulated workload fails ``--bad-error-rate`` of its inferences): the
  time from the stage's start to the gate failing, and to every device of that stage serving
  the previous version again (goal: under two poll intervals after the failure), and the number
  of devices ever seen without a working model (goal: 0);
* with ``--moderate K``, K rollouts of **moderately bad** versions: every version fails
  ``--base-error-rate`` (1 % then) of its inferences and these ``--moderate-factor`` (2.5) times
  that: whether the gates catch each, at which stage and when. The simulator injects errors
  only, not latency (the 1.3x latency half of the study is ``benchmarks/gates.py --moderate``);
* the **false-rollback rate** of a good version under noisy telemetry over ``--false-runs``
  runs. Full fleet runs do not fit on two cores, so these runs use the same pure gate code the
  server runs (``edgeloop.fleet.evaluate_gate``) on simulated telemetry: per-device error
  counts (binomial) and p99 latencies (log-normal, per-hardware medians) at each stage's size.

Prints a table and writes ``benchmarks/results/rollout.json``. Everything stops by itself.

    python benchmarks/rollout.py                         # 1,000 devices (see docs/rollout.md)
    python benchmarks/rollout.py --devices 50 --poll 2   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "rollout.json"
GATES = ("error_rate<0.02", "p99_ms<=1.5*baseline")


def _fleet_bench() -> Any:
    """benchmarks/fleet.py's Server (a real ``edgeloop server`` process) and helpers."""
    spec = importlib.util.spec_from_file_location(
        "bench_fleet", Path(__file__).with_name("fleet.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fleet"] = module
    spec.loader.exec_module(module)
    return module


def _ts(at: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def _event_time(r: dict[str, Any], kind: str) -> float | None:
    return next((_ts(e["at"]) for e in r["events"] if e["kind"] == kind), None)


def _started(r: dict[str, Any]) -> float:
    return _ts(r["created_at"])


async def fleet_rollouts(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from edgeloop.agent import Simulator, simulated_profiles
    from edgeloop.client import AdminClient, RolloutClient, create_tokens

    bench = _fleet_bench()
    srv = bench.Server(f"sqlite:///{tmp / 'fleet.db'}", tmp, args.poll)
    out: dict[str, Any] = {"devices": n, "poll_interval_s": args.poll, "soak_s": args.soak}
    try:
        moderate = list(range(4, 4 + args.moderate))
        for v in (1, 2, 3, *moderate):
            srv.publish("bench", v)
        srv.desire("bench", 1)
        client = RolloutClient(srv.url, srv.admin_token)
        tokens = await create_tokens(srv.url, srv.admin_token, n, model="bench")
        bad_rate = args.bad_error_rate
        base_rate = args.base_error_rate or (0.01 if moderate else 0.0)
        moderate_rate = base_rate * args.moderate_factor

        def fault(m: Any) -> float:
            if m.version == 3:
                return float(bad_rate)
            return moderate_rate if m.version in moderate else base_rate

        sim = Simulator(
            srv.url,
            tmp / "devices",
            tokens,
            simulated_profiles("mix", n),
            poll_interval_s=args.poll,
            rps=args.rps,
            workers=8,
            fault=fault,
            provisioning=AdminClient(srv.url, srv.admin_token).provision(model="bench"),
        )
        t0 = time.monotonic()
        await asyncio.wait_for(sim.warm_up(), timeout=args.warm_timeout)
        out["warm_up_s"] = round(time.monotonic() - t0, 1)
        out["enrolled"] = sum(a.identity is not None for a in sim.agents)
        without: set[int] = set()
        served: set[int] = set()  # devices seen serving a model
        last_v3 = [0.0]
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                for i, a in enumerate(sim.agents):
                    if a.model is None:
                        if i in served:  # it had a working model and lost it
                            without.add(i)
                        continue
                    served.add(i)
                    if a.model.version == 3:
                        last_v3[0] = time.time()
                await asyncio.sleep(0.25)

        def steps() -> dict[str, Any]:
            stages = [float(p) for p in args.stages.split(",")]
            opts = {"min_devices": 3, "min_requests": args.min_requests}
            res: dict[str, Any] = {}
            t = time.time()
            good = client.start("bench", 2, stages=stages, soak_s=args.soak, gates=GATES, **opts)
            good = client.wait(good["id"], ("completed", "rolled_back"), timeout_s=args.timeout)
            while (
                sim.serving().get("bench@2", 0) < out["enrolled"] and time.time() - t < args.timeout
            ):
                time.sleep(0.1)
            start = _started(good)
            done_at = _event_time(good, "complete")
            res["good"] = {
                "state": good["state"],
                "reason": good["reason"],
                "completed_s": round(done_at - start, 1) if done_at else None,
                "all_serving_s": round(time.time() - t, 1),
                "serving": dict(sim.serving()),
                "stage_done_s": [
                    round(_ts(e["at"]) - start, 1)
                    for e in good["events"]
                    if e["kind"] in ("advance", "complete")
                ],
            }
            bad = client.start(
                "bench", 3, stages=stages, soak_s=args.soak * 20, gates=GATES, **opts
            )
            bad = client.wait(
                bad["id"], ("failed", "rolled_back", "completed"), timeout_s=args.timeout
            )
            bad = client.wait(bad["id"], ("rolled_back", "completed"), timeout_s=args.timeout)
            start = _started(bad)
            failed = _event_time(bad, "gate_failed")
            deadline = time.time() + args.timeout
            while time.time() < deadline and any(
                a.model is not None and a.model.version == 3 for a in sim.agents
            ):
                time.sleep(0.1)
            back = last_v3[0]
            res["bad"] = {
                "state": bad["state"],
                "reason": bad["reason"],
                "stage_devices": bad["stage_devices"],
                "gate_failed_s": round(failed - start, 1) if failed else None,
                "all_back_s": round(back - start, 1) if failed else None,
                "back_after_failure_s": round(back - failed, 1) if failed else None,
                "back_after_failure_polls": round((back - failed) / args.poll, 2)
                if failed
                else None,
                "serving": dict(sim.serving()),
            }
            res["moderate"] = []
            for v in moderate:  # each a rollout of its own moderately bad version
                r = client.start(
                    "bench", v, stages=stages, soak_s=args.soak * 4, gates=GATES, **opts
                )
                r = client.wait(
                    r["id"], ("rolled_back", "completed", "aborted"), timeout_s=args.timeout
                )
                failed = _event_time(r, "gate_failed")
                res["moderate"].append(
                    {
                        "version": v,
                        "error_rate": moderate_rate,
                        "control_error_rate": base_rate,
                        "caught": r["state"] == "rolled_back",
                        "state": r["state"],
                        "stage": r["stage"] + 1,
                        "stage_devices": r["stage_devices"],
                        "gate_failed_s": round(failed - _started(r), 1) if failed else None,
                        "reason": r["reason"],
                    }
                )
                if r["state"] == "completed":  # missed: the fleet runs it; back to version 2
                    client.rollback(r["id"], "benchmark: back to the good version")
                    client.wait(r["id"], ("rolled_back",), timeout_s=args.timeout)
            return res

        watcher = asyncio.create_task(watch())
        runner = asyncio.create_task(asyncio.to_thread(steps))
        runner.add_done_callback(lambda _t: done.set())
        await sim.run(args.timeout * 3, until=done.is_set)
        res = await runner
        await watcher
        out.update(res)
        out["devices_ever_without_model"] = len(without)
        out["devices_never_served"] = n - len(served)  # never finished a first install
        out["installs"] = int(sum(a.telemetry.totals.get("installs", 0) for a in sim.agents))
        out["switches"] = int(sum(a.telemetry.totals.get("switches", 0) for a in sim.agents))
        await sim.aclose()
    finally:
        srv.stop()
    return out


# --- false rollbacks: the pure gate code on simulated telemetry ------------------------------


def _fleet_reports(rng: random.Random, n: int, reports: int, requests: int) -> list[Any]:
    from edgeloop.fleet import DeviceSample

    hardware = [4.0, 6.0, 10.0, 15.0, 25.0]  # per-target p99 medians (ms): a mixed fleet
    out = []
    for i in range(n):
        base = hardware[i % len(hardware)]
        reps = []
        for _ in range(reports):
            errors = sum(rng.random() < 0.003 for _ in range(requests))
            reps.append(
                {
                    "requests": requests,
                    "errors": errors,
                    "error_rate": errors / requests,
                    "p99_ms": base * rng.lognormvariate(0, 0.3),
                }
            )
        out.append(DeviceSample(f"d{i}", tuple(reps)))
    return out


def false_rollbacks(runs: int, n: int, stages: list[float], seed: int = 0) -> dict[str, Any]:
    """A good version (same telemetry distribution as the control) judged ``runs`` times."""
    import math

    from edgeloop.fleet import GateOptions, evaluate_gate, parse_gate

    gates = [parse_gate(g) for g in GATES]
    opts = GateOptions(min_devices=3, min_requests=100)
    failed_runs = 0
    checks = 0
    for run in range(runs):
        rng = random.Random(seed + run)
        failed = False
        for pct in stages:
            k = max(1, math.ceil(pct / 100 * n))
            for _ in range(6):  # a gate is evaluated at every tick of a stage's soak
                stage = _fleet_reports(rng, k, rng.randint(1, 4), rng.randint(5, 40))
                control = _fleet_reports(rng, max(n - k, 50), 2, 20)
                for g in gates:
                    checks += 1
                    if evaluate_gate(g, stage, control, opts, stage_size=k).status == "fail":
                        failed = True
        failed_runs += failed
    return {
        "runs": runs,
        "devices": n,
        "checks": checks,
        "false_rollbacks": failed_runs,
        "rate": failed_runs / runs,
        "method": "pure gate code on simulated telemetry (not full fleet runs)",
    }


def table(out: dict[str, Any]) -> str:
    lines = [
        "| devices | poll | good: 4 stages done | bad: gate failed | bad: stage back | "
        "back after failure | ever without model |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in out["fleet"]:
        g, b = r.get("good", {}), r.get("bad", {})
        lines.append(
            f"| {r['devices']} | {r['poll_interval_s']:g} s | {g.get('completed_s')} s | "
            f"{b.get('gate_failed_s')} s | {b.get('all_back_s')} s | "
            f"{b.get('back_after_failure_s')} s ({b.get('back_after_failure_polls')} polls) | "
            f"{r.get('devices_ever_without_model')} |"
        )
    moderate = [m for r in out["fleet"] for m in r.get("moderate", [])]
    if moderate:
        caught = sum(m["caught"] for m in moderate)
        lines.append("")
        lines.append(
            f"moderately bad versions (errors {moderate[0]['error_rate']:.3g} vs "
            f"{moderate[0]['control_error_rate']:.3g}): caught {caught}/{len(moderate)} "
            "(stage, s from its start: "
            + ", ".join(f"{m['stage']}@{m['gate_failed_s']}" for m in moderate if m["caught"])
            + ")"
        )
    f = out["false_rollbacks"]
    lines.append("")
    lines.append(
        f"false rollbacks of a good version: {f['false_rollbacks']}/{f['runs']} runs "
        f"({f['checks']} gate checks, {f['devices']} devices; {f['method']})"
    )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, nargs="+", default=[1000])
    p.add_argument("--poll", type=float, default=10.0, help="the server's poll interval (s)")
    p.add_argument("--soak", type=float, default=5.0, help="soak per stage (s)")
    p.add_argument("--stages", default="1,10,50,100")
    p.add_argument("--rps", type=float, default=0.3, help="inferences per device per second")
    p.add_argument("--min-requests", type=int, default=50)
    p.add_argument("--bad-error-rate", type=float, default=0.2)
    p.add_argument("--moderate", type=int, default=0, help="moderately bad rollouts to run")
    p.add_argument("--base-error-rate", type=float, default=0.0, help="every version's errors")
    p.add_argument("--moderate-factor", type=float, default=2.5)
    p.add_argument("--false-runs", type=int, default=20)
    p.add_argument("--warm-timeout", type=float, default=900.0)
    p.add_argument("--timeout", type=float, default=600.0, help="per rollout (s)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    out: dict[str, Any] = {
        "machine": {"cpu_count": __import__("os").cpu_count(), "python": platform.python_version()},
        "gates": list(GATES),
        "stages": args.stages,
        "fleet": [],
    }
    for n in args.devices:
        with tempfile.TemporaryDirectory(prefix="edgeloop-rollout-") as tmp:
            t = time.monotonic()
            row = asyncio.run(fleet_rollouts(n, args, Path(tmp)))
            row["wall_s"] = round(time.monotonic() - t, 1)
            out["fleet"].append(row)
            print(json.dumps(row, indent=1), flush=True)
    stages = [float(s) for s in args.stages.split(",")]
    out["false_rollbacks"] = false_rollbacks(args.false_runs, max(args.devices), stages)
    print(table(out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
