"""Gate poisoning benchmark: can one device outvote a stage? (issue 13, attack 3)

The server's own gate code (``edgeloop.fleet.evaluate_gate``) on simulated telemetry, as
benchmarks/rollout.py judges false rollbacks: per-device error counts (binomial) for a control
group on the previous version and a stage on the new one. A **moderately bad** version has an
error rate 2-3x the control's; the gate is ``error_rate<1.5*baseline``, evaluated at six ticks
of a stage's soak (a run detects the version when any tick fails it). Each run is judged three
ways on the same telemetry:

* **clean**: the stage's honest devices only;
* **poisoned**: plus one stage device that reports ``requests=1e6, errors=0`` over an hour
  (inside ingest's bounds: 10,000 requests/s of window), the attack of issue 13;
* **poisoned, no cap**: the same with ``weight_cap=0`` and no exclusion (the gates before
  the fix);
* **poisoned, modest**: a subtler poisoner that claims ``requests=150, errors=0`` (about three
  honest devices' worth, not implausible on its own): only the weight cap bounds it.

Also the false-alarm rate of a good version (same rate as the control), clean and with a
poisoning device that reports ``errors == requests`` (a device trying to block a release).
Goal: the poisoned detection rate within 5 points of the clean one.

Prints a table and writes ``benchmarks/results/gates.json``.

    python benchmarks/gates.py              # 200 runs per stage size (what docs/security.md quotes)
    python benchmarks/gates.py --runs 20    # a quick look

**The moderately bad version study** (``--moderate``, issue 15): how often the gates catch a
version whose errors are 2-3x the control's and whose p99 latency is 1.3x, and how often they
fail a good version (the same distributions as the control), at each stage size of a fleet
(1, 10, 50, 100 % of ``--fleet``). Per run: a control error rate drawn from 0.5-2 %, per-device
requests per report 5-40, p99 per device from five hardware classes (8-60 ms) with log-normal
noise; the stage and the control report once per tick and the gates judge everything since the
stage started at ``--ticks`` ticks of the soak (a run fails when any tick fails any gate, as the
rollout does). At 100 % the control is the previous version's reports from before the stage.
Two gate sets: the rollout benchmark's (``error_rate<0.02``, ``p99_ms<=1.5*baseline``) and
relative ones (``error_rate<1.5*baseline``, ``p99_ms<=1.2*baseline``); each gate's own rate
is reported too. Writes ``benchmarks/results/gates-moderate.json``.

    python benchmarks/gates.py --moderate                    # 200 runs x 4 stage sizes, ~5 min
    python benchmarks/gates.py --moderate --runs 10 --fleet 200 --jobs 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results" / "gates.json"
MODERATE_RESULTS = Path(__file__).parent / "results" / "gates-moderate.json"
GATE = "error_rate<1.5*baseline"
TICKS = 6
POISON_REQUESTS = 1e6
MODEST_REQUESTS = 150.0  # ~3x an honest device's count: not implausible, only capped


def _group(rng: np.random.Generator, prefix: str, n: int, rate: float, reports: int) -> list[Any]:
    from edgeloop.fleet import DeviceSample

    out = []
    for i in range(n):
        reps = []
        for _ in range(reports):
            requests = int(rng.integers(5, 41))
            errors = int(rng.binomial(requests, rate))
            reps.append({"requests": float(requests), "errors": float(errors)})
        out.append(DeviceSample(f"{prefix}{i}", tuple(reps)))
    return out


def _poisoner(errors_fraction: float, requests: float = POISON_REQUESTS) -> Any:
    from edgeloop.fleet import DeviceSample

    report = {"requests": requests, "errors": requests * errors_fraction}
    return DeviceSample("poison", (report,))


def runs_for(stage_size: int, runs: int, seed: int) -> dict[str, Any]:
    from edgeloop.fleet import GateOptions, evaluate_gate, parse_gate

    gate = parse_gate(GATE)
    capped, uncapped = GateOptions(), GateOptions(weight_cap=0.0, exclude_implausible=False)
    hits = {"clean": 0, "poisoned": 0, "poisoned_no_cap": 0, "poisoned_modest": 0}
    alarms = {"clean": 0, "poisoned": 0}
    for run in range(runs):
        rng = np.random.default_rng([seed, stage_size, run])
        control_rate = float(rng.uniform(0.005, 0.02))
        bad_rate = control_rate * float(rng.uniform(2.0, 3.0))
        found = dict.fromkeys(hits, False)
        false = dict.fromkeys(alarms, False)
        for _ in range(TICKS):
            control = _group(rng, "c", 50, control_rate, 2)
            bad = _group(rng, "t", stage_size, bad_rate, int(rng.integers(1, 5)))
            good = _group(rng, "t", stage_size, control_rate, int(rng.integers(1, 5)))
            k = stage_size + 1

            def fails(
                stage: list[Any], opts: Any, control: list[Any] = control, k: int = k
            ) -> bool:
                return evaluate_gate(gate, stage, control, opts, stage_size=k).status == "fail"

            found["clean"] |= fails(bad, capped)
            found["poisoned"] |= fails([*bad, _poisoner(0.0)], capped)
            found["poisoned_no_cap"] |= fails([*bad, _poisoner(0.0)], uncapped)
            found["poisoned_modest"] |= fails([*bad, _poisoner(0.0, MODEST_REQUESTS)], capped)
            false["clean"] |= fails(good, capped)
            false["poisoned"] |= fails([*good, _poisoner(1.0)], capped)
        for key, value in found.items():
            hits[key] += value
        for key, value in false.items():
            alarms[key] += value
    detection = {k: v / runs for k, v in hits.items()}
    return {
        "stage_devices": stage_size,
        "runs": runs,
        "detection": detection,
        "false_alarm": {k: v / runs for k, v in alarms.items()},
        "poisoned_shift_points": round(100 * (detection["clean"] - detection["poisoned"]), 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'stage':>5} {'runs':>5} {'detect clean':>12} {'poisoned':>9} {'no cap':>7} "
        f"{'modest':>7} {'shift pts':>9} {'false clean':>11} {'false poisoned':>14}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        d, f = r["detection"], r["false_alarm"]
        lines.append(
            f"{r['stage_devices']:>5} {r['runs']:>5} {d['clean']:>12.1%} {d['poisoned']:>9.1%} "
            f"{d['poisoned_no_cap']:>7.1%} {d['poisoned_modest']:>7.1%} "
            f"{r['poisoned_shift_points']:>9.1f} "
            f"{f['clean']:>11.1%} {f['poisoned']:>14.1%}"
        )
    return "\n".join(lines)


# --- the moderately bad version study (issue 15) --------------------------------------------

GATE_SETS = {
    "benchmark": ("error_rate<0.02", "p99_ms<=1.5*baseline"),
    "relative": ("error_rate<1.5*baseline", "p99_ms<=1.2*baseline"),
}
HARDWARE_P99_MS = (8.0, 12.0, 20.0, 35.0, 60.0)
BAD_LATENCY = 1.3


def _telemetry(
    rng: np.random.Generator, prefix: str, n: int, ticks: int, rate: float, latency: float
) -> list[list[dict[str, float]]]:
    """``ticks`` reports per device: requests, errors (binomial), error_rate, p99_ms."""
    requests = rng.integers(5, 41, size=(n, ticks)).astype(float)
    errors = rng.binomial(requests.astype(int), rate).astype(float)
    hw = np.array([HARDWARE_P99_MS[int(k)] for k in rng.integers(0, len(HARDWARE_P99_MS), n)])
    p99 = hw[:, None] * latency * rng.lognormal(0.0, 0.15, size=(n, ticks))
    return [
        [
            {
                "requests": float(requests[i, t]),
                "errors": float(errors[i, t]),
                "error_rate": float(errors[i, t] / requests[i, t]),
                "p99_ms": float(p99[i, t]),
            }
            for t in range(ticks)
        ]
        for i in range(n)
    ]


def _samples(prefix: str, reports: list[list[dict[str, float]]], upto: int) -> list[Any]:
    from edgeloop.fleet import DeviceSample

    return [DeviceSample(f"{prefix}{i}", tuple(r[:upto])) for i, r in enumerate(reports)]


def moderate_run(args: tuple[int, int, int, int, int, int]) -> dict[str, Any]:
    """One run at one stage size: a good and a moderately bad version, every gate, every tick.
    Returns per version the gates that failed at any tick."""
    from edgeloop.fleet import GateOptions, evaluate_gate, parse_gate

    seed, fleet, stage, control_cap, ticks, run = args
    rng = np.random.default_rng([seed, fleet, stage, run])
    rate = float(rng.uniform(0.005, 0.02))
    bad_rate = rate * float(rng.uniform(2.0, 3.0))
    n_control = min(control_cap, fleet - stage if stage < fleet else fleet)
    control = _telemetry(rng, "c", n_control, ticks, rate, 1.0)
    versions = {
        "good": _telemetry(rng, "t", stage, ticks, rate, 1.0),
        "bad": _telemetry(rng, "t", stage, ticks, bad_rate, BAD_LATENCY),
    }
    opts = GateOptions(min_devices=3, min_requests=100)
    gates = sorted({g for gs in GATE_SETS.values() for g in gs})
    failed: dict[str, list[str]] = {"good": [], "bad": []}
    for t in range(1, ticks + 1):
        # at 100 % the control is the previous version before the stage: all its reports
        c = _samples("c", control, ticks if stage >= fleet else t)
        for version, reports in versions.items():
            s = _samples("t", reports, t)
            for g in gates:
                if g in failed[version]:
                    continue
                r = evaluate_gate(parse_gate(g), s, c, opts, stage_size=stage)
                if r.status == "fail":
                    failed[version].append(g)
    return {"stage": stage, "run": run, "failed": failed, "control_rate": rate}


def moderate_study(
    runs: int, fleet: int, stages: list[float], control_cap: int, ticks: int, seed: int, jobs: int
) -> list[dict[str, Any]]:
    import math
    from concurrent.futures import ProcessPoolExecutor

    sizes = [max(1, math.ceil(p / 100 * fleet)) for p in stages]
    tasks = [(seed, fleet, k, control_cap, ticks, run) for k in sizes for run in range(runs)]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(moderate_run, tasks, chunksize=4))
    else:
        results = [moderate_run(t) for t in tasks]
    rows = []
    for pct, k in zip(stages, sizes, strict=True):
        mine = [r for r in results if r["stage"] == k]
        row: dict[str, Any] = {
            "stage_percent": pct,
            "stage_devices": k,
            "control_devices": min(control_cap, fleet - k if k < fleet else fleet),
            "runs": len(mine),
            "gate_sets": {},
            "gates": {},
        }
        for name, gs in GATE_SETS.items():
            row["gate_sets"][name] = {
                "detection": sum(any(g in r["failed"]["bad"] for g in gs) for r in mine)
                / len(mine),
                "false_fail": sum(any(g in r["failed"]["good"] for g in gs) for r in mine)
                / len(mine),
            }
        for g in sorted({g for gs in GATE_SETS.values() for g in gs}):
            row["gates"][g] = {
                "detection": sum(g in r["failed"]["bad"] for r in mine) / len(mine),
                "false_fail": sum(g in r["failed"]["good"] for r in mine) / len(mine),
            }
        rows.append(row)
    return rows


def moderate_table(rows: list[dict[str, Any]]) -> str:
    names = list(GATE_SETS)
    head = f"{'stage':>6} {'devices':>7} {'control':>7} {'runs':>5}" + "".join(
        f" {n + ' detect':>17} {n + ' false':>16}" for n in names
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (
            f"{r['stage_percent']:>5g}% {r['stage_devices']:>7} {r['control_devices']:>7} "
            f"{r['runs']:>5}"
        )
        for n in names:
            g = r["gate_sets"][n]
            line += f" {g['detection']:>17.1%} {g['false_fail']:>16.1%}"
        lines.append(line)
    lines.append("")
    gates = sorted(rows[0]["gates"]) if rows else []
    head = f"{'stage':>6}" + "".join(f" {g:>26}" for g in gates)
    lines += ["each gate alone: detection / false fail", head, "-" * len(head)]
    for r in rows:
        line = f"{r['stage_percent']:>5g}%"
        for g in gates:
            v = r["gates"][g]
            line += f" {v['detection']:>17.1%} / {v['false_fail']:>5.1%}"
        lines.append(line)
    return "\n".join(lines)


def moderate_main(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    stages = [float(p) for p in args.stage_percents.split(",")]
    rows = moderate_study(
        args.runs, args.fleet, stages, args.control_cap, args.ticks, args.seed, args.jobs
    )
    out = {
        "study": "moderately bad version: errors 2-3x the control, p99 latency 1.3x",
        "gate_sets": {k: list(v) for k, v in GATE_SETS.items()},
        "fleet": args.fleet,
        "ticks": args.ticks,
        "control_cap": args.control_cap,
        "method": "pure gate code (edgeloop.fleet.evaluate_gate) on simulated telemetry",
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "jobs": args.jobs,
        "machine": platform.platform(),
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "load_after": os.getloadavg()[0],
    }
    print(moderate_table(rows))
    path = args.out if args.out != RESULTS else MODERATE_RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path} ({out['seconds']} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--stages", default="5,10,20,50", help="stage sizes (devices)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--moderate", action="store_true", help="the moderately bad study")
    parser.add_argument("--fleet", type=int, default=1000, help="--moderate: fleet size")
    parser.add_argument("--stage-percents", default="1,10,50,100", help="--moderate: stages")
    parser.add_argument("--control-cap", type=int, default=500, help="--moderate: control size")
    parser.add_argument("--ticks", type=int, default=3, help="--moderate: checks per soak")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="--moderate")
    args = parser.parse_args()
    if args.moderate:
        moderate_main(args)
        return
    start = time.perf_counter()
    rows = [runs_for(int(k), args.runs, args.seed) for k in args.stages.split(",")]
    out = {
        "gate": GATE,
        "ticks": TICKS,
        "poison_requests": POISON_REQUESTS,
        "method": "pure gate code on simulated telemetry (binomial errors), as rollout.py",
        "rows": rows,
        "max_shift_points": max(r["poisoned_shift_points"] for r in rows),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": platform.platform(),
        # detection rates come from seeded simulation and do not depend on load; the load is
        # recorded all the same (run through ../shared/tools/quiet)
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "load_after": os.getloadavg()[0],
    }
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
