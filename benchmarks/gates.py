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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--stages", default="5,10,20,50", help="stage sizes (devices)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
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
