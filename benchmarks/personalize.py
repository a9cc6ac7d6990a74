"""Personalization benchmark: on-device personal heads on the drifted devices of the federated
benchmark's drift scenario, their cost on the device, and the hybrid schedule against federated
rounds alone and central retraining alone.

Per seed (textures, as in ``benchmarks/federated.py``): the base model is trained on a small
build-time draw and exported (``federated.base_model``, its cache). The train split is cut in
two, so that every step of the hybrid schedule has something the base did not see:

- the first half is the data the user holds **centrally**, with ``--central-drift`` of it (and
  of the central val split) as the drifted sensor records it (``federated.server.drift_inputs``,
  in batches of 50 a sensor, sensors other than the devices'): examples of the drifted domain
  collected centrally, which the base never saw;
- the second half is spread over ``--clients`` simulated **devices** partitioned
  ``--partition`` (default ``drift:0.5``: half of them see ``sensor_shift``-ed inputs, data that
  differs from the base's), each labelling ``--label-share`` of its predictions.

Compared (``edgeloop.federated.server.hybrid_schedule``):

- ``personal``: personalization alone, on the base as deployed (personal heads started from the
  fleet head and pulled toward it, their strength cross-validated on the device's labels);
- ``scratch``: the same with heads fitted from scratch (the earlier method);
- ``central``: the head retrained on the central half only;
- ``federated``: ``--rounds`` FedAvg rounds only;
- ``hybrid``: central, then federated, then personalization;
- per schedule: the final model's accuracy on the test split and on the test split as the
  drifted devices record it; whether each model step was accepted at its gate and why (its
  gate's parent and candidate accuracy); and for the devices (all, and the drifted ones) their
  accuracy with the fleet head, and with what they serve after personalization (their personal
  head only where its out-of-fold gain on their labels is positive), on each device's
  predictions that got no label (``unlabelled_*``: the device never trained on them nor chose
  its head with them), and on 200 fresh samples of the test split as the device's sensor records
  them (``fresh_*``: new predictions from the device's distribution; the unlabelled ones are the
  complement of the labelled ones within the device's finite sample, so whatever the labelled
  half over-represents the unlabelled half under-represents);
- device cost of one personal-head fit on a device's labelled samples: seconds and peak
  Python memory (``tracemalloc``), and the head's stored size.

    python benchmarks/personalize.py            # 3 seeds, 20 devices, 5 rounds
    python benchmarks/personalize.py --quick    # smoke run: tiny data, 1 seed, 2 rounds

Prints a table (mean and standard deviation over seeds) and writes
``benchmarks/results/personalize.json``; ``BENCH_LOAD_BEFORE`` (e.g. ``uptime`` before the run)
is recorded when set, with the load after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

RESULTS = Path(__file__).parent / "results" / "personalize.json"
WORKDIR = Path(__file__).parent / "results" / "federated-work"  # federated.py's base cache
SCHEDULES = ("personal", "scratch", "central", "federated", "hybrid")
SENSOR_BATCH = 50  # central examples recorded by one drifted sensor


def device_cost(model: bytes, x: np.ndarray, y: np.ndarray, label_share: float,
                seed: int) -> dict[str, float]:
    """One personal-head fit as a device does it: seconds, peak traced memory, stored bytes."""
    from edgeloop.agent import fit_personal
    from edgeloop.artifacts import sha256_bytes
    from edgeloop.federated.device import EMBEDDING_OUTPUT
    from edgeloop.federated.server import with_embedding
    from edgeloop.runtime import Session, run_batched

    out = run_batched(Session(with_embedding(model), providers=["CPUExecutionProvider"]), x)
    feats = np.asarray(out[EMBEDDING_OUTPUT], np.float32).reshape(len(x), -1)
    probs = next(v for k, v in out.items() if k != EMBEDDING_OUTPUT)
    keep = np.random.default_rng(seed).random(len(y)) < label_share
    served = np.asarray(probs).argmax(axis=1)
    k = int(np.asarray(probs).shape[1])
    tracemalloc.start()
    t0 = time.perf_counter()
    head = fit_personal(feats[keep], y[keep], served[keep], n_classes=k,
                        base_sha256=sha256_bytes(model), embedding=EMBEDDING_OUTPUT,
                        output="probs", probabilities=True,
                        fleet=np.asarray(probs)[keep])
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"fit_seconds": seconds, "fit_peak_mb": peak / 2**20,
            "head_bytes": float(len(head.to_bytes(b"k" * 32))), "samples": float(keep.sum()),
            "features": float(feats.shape[1])}


def drifted_share(x: np.ndarray, share: float, seed: int) -> np.ndarray:
    """``x`` with ``share`` of its examples (every other batch of ``SENSOR_BATCH`` at 0.5) as
    drifted sensors record them: each batch through its own sensor, none of the devices'."""
    from edgeloop.federated.server import drift_inputs

    out = np.array(x, dtype=np.float32, copy=True)
    if share <= 0:
        return out
    batches = np.array_split(np.arange(len(x)), max(1, len(x) // SENSOR_BATCH))
    every = 1.0 / share
    for j, idx in enumerate(batches):
        if int((j + 1) / every) > int(j / every):  # share of the batches, spread out
            out[idx] = drift_inputs(x[idx], 1.0, 10_000 + 1_000 * seed + j)
    return out


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from edgeloop.agent import PersonalConfig
    from edgeloop.data import load_dataset
    from edgeloop.federated.server import SchedulePlan, SimulationPlan, hybrid_schedule
    from federated import TASKS, accuracy, base_model, data_opts, drifted_test, recipe_for

    _, dataset, _ = TASKS["textures"]
    model, base_info, _ = base_model("textures", seed, recipe_for("textures", args), work,
                                     args.base_threads)
    opts = data_opts(dataset, args.n)
    train = load_dataset(dataset, "train", seed=seed, **opts)
    val = load_dataset(dataset, "val", seed=seed, **opts)
    test = load_dataset(dataset, "test", seed=seed, **opts)
    x, y = np.asarray(train.x), np.asarray(train.y)
    half = len(y) // 2
    central = ((drifted_share(x[:half], args.central_drift, 2 * seed), y[:half]),
               (drifted_share(np.asarray(val.x), args.central_drift, 2 * seed + 1),
                np.asarray(val.y)))
    devices = (x[half:], y[half:])
    xt, yt = np.asarray(test.x), np.asarray(test.y)
    xt_drift = drifted_test(xt, devices[1], args.clients, args.partition, seed)
    fl = SimulationPlan(clients=args.clients, rounds=args.rounds, partition=args.partition,
                        epochs=args.local_epochs, lr=args.lr, label_share=args.label_share,
                        seed=seed)
    central_kw = {"central_epochs": args.central_epochs, "central_lr": args.lr}
    plans = {
        "personal": SchedulePlan(central_epochs=0, federated=None, devices=fl, seed=seed),
        "scratch": SchedulePlan(central_epochs=0, federated=None, devices=fl, seed=seed,
                                personal=PersonalConfig(anchored=False)),
        "central": SchedulePlan(**central_kw, federated=None, devices=fl, seed=seed),
        "federated": SchedulePlan(central_epochs=0, federated=fl, devices=fl, seed=seed),
        "hybrid": SchedulePlan(**central_kw, federated=fl, devices=fl, seed=seed),
    }

    def scores(m: bytes) -> dict[str, float]:
        out = {"test_accuracy": accuracy(m, xt, yt)}
        if xt_drift is not None:
            out["test_drifted_accuracy"] = accuracy(m, xt_drift, yt)
        return out

    rows = [{"seed": seed, "schedule": "none", **scores(model),
             "base_fit_seconds": base_info["fit_seconds"], "base_cached": base_info["cached"]}]
    for name, plan in plans.items():
        t0, c0 = time.perf_counter(), time.process_time()
        result = hybrid_schedule(model, central=central if plan.central_epochs else None,
                                 devices=devices, plan=plan, fresh=(xt, yt))
        personal = result.steps[-1].metrics
        gates = {s.kind: {"accepted": s.accepted, "reason": s.detail.get("reason"),
                          **{k: s.metrics[k] for k in ("base_accuracy", "accuracy")
                             if k in s.metrics}}
                 for s in result.steps if s.kind != "personalize"}
        devices_detail = result.steps[-1].detail.get("devices", [])
        rows.append({
            "seed": seed, "schedule": name, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0, **scores(result.model),
            "steps": {s.kind: s.accepted for s in result.steps}, "gates": gates,
            "strengths": [d.get("strength") for d in devices_detail if "strength" in d],
            **{f"devices_{k}": v for k, v in personal.items()},
        })
    per_device = min(len(devices[1]), max(len(devices[1]) // args.clients, 100))
    rows.append({"seed": seed, "schedule": "device-cost",
                 **device_cost(model, devices[0][:per_device], devices[1][:per_device],
                               args.label_share, seed)})
    return rows


def gate_cell(rows: list[dict[str, Any]], kind: str) -> str:
    """How a model step fared at its gate over the seeds: accepted k/n, the mean parent and
    candidate accuracy, and the first rejection's reason."""
    gates = [r["gates"][kind] for r in rows if kind in r.get("gates", {})]
    if not gates:
        return "-"
    ok = sum(g["accepted"] for g in gates)
    base = [g["base_accuracy"] for g in gates if "base_accuracy" in g]
    cand = [g["accuracy"] for g in gates if "accuracy" in g]
    cell = f"{kind} {ok}/{len(gates)}"
    if base and cand:
        cell += f" ({statistics.fmean(base):.3f}->{statistics.fmean(cand):.3f})"
    why = next((g["reason"] for g in gates if not g["accepted"] and g.get("reason")), None)
    return cell + (f" rejected: {why}" if why else "")


def _ms(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in ("none", *SCHEDULES, "device-cost"):
        group = [r for r in rows if r["schedule"] == name]
        keys = sorted({k for r in group for k, v in r.items()
                       if isinstance(v, float) and k != "seed"})
        entry: dict[str, Any] = {"schedule": name, "seeds": len(group)}
        for k in keys:
            vals = [float(r[k]) for r in group if k in r]
            entry[f"{k}_mean"], entry[f"{k}_std"] = _ms(vals)
        out.append(entry)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--local-epochs", type=int, default=3)
    ap.add_argument("--central-epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--label-share", type=float, default=0.5)
    ap.add_argument("--partition", default="drift:0.5",
                    help="the devices' partition [drift:0.5: half of them drifted]")
    ap.add_argument("--central-drift", type=float, default=0.5,
                    help="share of the central data recorded by drifted sensors [0.5]")
    ap.add_argument("--base-n", type=int, default=None,
                    help="the base's build-time draw [federated.py's textures recipe]")
    ap.add_argument("--base-epochs", type=int, default=None)
    ap.add_argument("--base-batch", type=int, default=None)
    ap.add_argument("--base-lr", type=float, default=None)
    ap.add_argument("--base-threads", type=int, default=1,
                    help="torch threads for the base [1]")
    ap.add_argument("--workdir", type=Path, default=WORKDIR,
                    help="trained bases, shared with benchmarks/federated.py (a cache)")
    ap.add_argument("--n", type=int, default=None, help="textures dataset size (default 10000)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: small data, 1 seed, 2 rounds, 5 clients, base 3 epochs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.rounds, args.clients = args.seeds[:1], 2, 5
        args.n, args.base_n, args.base_epochs = 1000, 400, args.base_epochs or 3
        args.base_batch = args.base_batch or 64
        args.central_epochs = 3
    import edgeloop.federated.server  # noqa: F401 - Flower sets its logger up on import

    logging.getLogger("flwr").setLevel(logging.WARNING)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        rows.extend(run_seed(seed, args, args.workdir))
    table = summarise(rows)

    def cell(t: dict[str, Any], key: str) -> str:
        m = t.get(f"{key}_mean")
        return "-" if m is None else f"{m:.4f}±{t[f'{key}_std']:.4f}"

    print(f"\n{'schedule':<10} {'test acc':>16} {'test drifted':>16} {'drifted fleet':>16} "
          f"{'drifted served':>16} {'all fleet':>16} {'all served':>16}")
    for t in table[:-1]:
        print(f"{t['schedule']:<10} {cell(t, 'test_accuracy'):>16} "
              f"{cell(t, 'test_drifted_accuracy'):>16} "
              f"{cell(t, 'devices_drifted_unlabelled_fleet_accuracy'):>16} "
              f"{cell(t, 'devices_drifted_unlabelled_served_accuracy'):>16} "
              f"{cell(t, 'devices_unlabelled_fleet_accuracy'):>16} "
              f"{cell(t, 'devices_unlabelled_served_accuracy'):>16}")
    print(f"\nfresh samples (the test split through each device's sensor):\n{'schedule':<10} "
          f"{'drifted fleet':>16} {'drifted served':>16} {'all fleet':>16} {'all served':>16}")
    for t in table[1:-1]:
        print(f"{t['schedule']:<10} "
              f"{cell(t, 'devices_drifted_fresh_fleet_accuracy'):>16} "
              f"{cell(t, 'devices_drifted_fresh_served_accuracy'):>16} "
              f"{cell(t, 'devices_fresh_fleet_accuracy'):>16} "
              f"{cell(t, 'devices_fresh_served_accuracy'):>16}")
    print("\nmodel steps at their gates (accepted seeds; mean parent -> candidate accuracy):")
    for name in SCHEDULES:
        group = [r for r in rows if r["schedule"] == name]
        cells = [gate_cell(group, kind) for kind in ("central", "federated")]
        serving = [r.get("devices_serving", 0.0) for r in group]
        fitted = [r.get("devices_fitted", 0.0) for r in group]
        print(f"  {name:<10} " + "; ".join(c for c in cells if c != "-")
              + f"{'; ' if any(c != '-' for c in cells) else ''}personal heads served on "
              f"{sum(serving):.0f} of {sum(fitted):.0f} devices")
    cost = table[-1]
    print(f"\ndevice cost of one fit: {cell(cost, 'fit_seconds')} s, peak "
          f"{cell(cost, 'fit_peak_mb')} MB traced, head {cell(cost, 'head_bytes')} bytes stored")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "personalize", "quick": args.quick,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"), "load_after": os.getloadavg()[0],
        "wall_seconds": time.perf_counter() - start, "summary": table, "runs": rows,
    }
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(payload, indent=2, default=str))
    tmp_out.replace(args.out)
    print(f"\nwrote {args.out} ({payload['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
