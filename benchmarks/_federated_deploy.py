"""``benchmarks/federated.py --deploy``: the same task over a real SuperLink and SuperNodes on
loopback (TLS, node authentication), against the in-process simulation.

One base model (the task's, trained and cached in ``--workdir`` as the main benchmark's),
``--deploy-clients`` devices (10) holding an iid share of the train split with
``--label-share`` of it labelled. Each device's labelled features go into the samples file
its SuperNode reads, as an agent writes it; the in-process simulation gets the same data.
Rows, each ``--deploy-rounds`` rounds:

- ``inprocess-fedavg`` / ``inprocess-secagg``: ``simulate`` (one process);
- ``deploy-fedavg``: the run submitted to the SuperLink, each device's ClientApp in its
  SuperNode's process;
- ``deploy-secagg``: the same under Flower's SecAgg+ (four exchanges a round);
- ``deploy-dp-eps8`` / ``deploy-dp-eps1``: client-side DP (devices clip to ``--dp-clip``, the
  server adds Gaussian noise) with the noise multiplier that spends epsilon 8 / 1 at delta 1e-5
  over the run (``noise_for_epsilon``).

Per row: accuracy on the test split, wall seconds per round (median, and the first round,
which includes the ServerApp's start), bytes up/down per round as the server counted them.
SecAgg+'s cost is ``deploy-secagg`` against ``deploy-fedavg`` (and in process). Imported by
``federated.py`` (run as a script, so this folder is on ``sys.path``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _stamper(stamps: list[float]) -> Callable[[Any], None]:
    return lambda r: stamps.append(time.perf_counter())


def _rows(name: str, result: Any, stamps: list[float], began: float, acc: float,
          **extra: Any) -> dict[str, Any]:
    marks = [began, *stamps]
    per_round = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    return {
        "method": name, "accuracy": acc, "rounds": len(result.rounds),
        "rounds_aggregated": sum(r.aggregated for r in result.rounds),
        "first_round_seconds": per_round[0] if per_round else None,
        "round_seconds_median": statistics.median(per_round[1:] or per_round)
        if per_round else None,
        "wall_seconds": result.seconds,
        "bytes_up_per_round": statistics.fmean(r.bytes_up for r in result.rounds),
        "bytes_down_per_round": statistics.fmean(r.bytes_down for r in result.rounds),
        "gate": result.gate.to_dict(), "privacy": result.privacy, **extra,
    }


def run_deploy(args: Any, work: Path, *, base_model: Callable[[str, int], bytes],
               accuracy: Callable[[bytes, np.ndarray, np.ndarray], float],
               data_opts: Callable[[str, int | None], dict[str, Any]],
               tasks: dict[str, Any]) -> list[dict[str, Any]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgeloop.data import load_dataset
    from edgeloop.demo import make_local_ca
    from edgeloop.federated.device import EMBEDDING_OUTPUT, SuperNode, bind_node_key
    from edgeloop.federated.server import (
        DeployPlan,
        SimulationPlan,
        SuperLink,
        deploy,
        noise_for_epsilon,
        partition,
        simulate,
        with_embedding,
    )
    from edgeloop.runtime import Session, run_batched

    task, seed = args.tasks[0], args.seeds[0]
    _, dataset, _ = tasks[task]
    opts = data_opts(dataset, args.n)
    train = load_dataset(dataset, "train", seed=seed, **opts)
    test = load_dataset(dataset, "test", seed=seed, **opts)
    x, y = np.asarray(train.x), np.asarray(train.y).astype(np.int64)
    xt, yt = np.asarray(test.x), np.asarray(test.y)
    model = base_model(task, seed)
    clients, rounds = args.deploy_clients, args.deploy_rounds
    common = {"epochs": args.local_epochs, "lr": args.lr}
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        row = {"task": task, "seed": seed, "clients": clients, **row}
        rows.append(row)
        print(f"  deploy {row['method']:<18} acc {row['accuracy']:.4f} round "
              f"{row['round_seconds_median'] or float('nan'):.2f} s (first "
              f"{row['first_round_seconds'] or float('nan'):.2f} s) up "
              f"{row['bytes_up_per_round']:.0f} B/round", flush=True)

    for name, secagg in (("inprocess-fedavg", False), ("inprocess-secagg", True)):
        stamps: list[float] = []
        began = time.perf_counter()
        res = simulate(model, x, y, SimulationPlan(
            clients=clients, rounds=rounds, label_share=args.label_share, seed=seed,
            secagg=secagg, **common), on_round=_stamper(stamps))
        add(_rows(name, res, stamps, began, accuracy(res.model, xt, yt)))

    # each device's labelled features, as its agent writes them for its SuperNode
    served = with_embedding(model)
    session = Session(served, providers=["CPUExecutionProvider"])
    parts, _ = partition(y, clients, "iid", seed)
    rng = np.random.default_rng([seed, 0x51])
    ca = make_local_ca(work / "ca", "edgeloop benchmark CA")
    keys = {f"dev-{i}": Ed25519PrivateKey.generate() for i in range(clients)}
    nodes: list[Any] = []
    with SuperLink(ca.cert_pem, ca.key_pem, ca.ca_pem, work / "superlink") as link:
        for (dev, key), idx in zip(keys.items(), parts, strict=True):
            labelled = idx[rng.random(len(idx)) < args.label_share]
            feats = run_batched(session, x[labelled])[EMBEDDING_OUTPUT]
            path = work / f"{dev}.npz"
            np.savez(path, x=np.asarray(feats, np.float32).reshape(len(labelled), -1),
                     y=y[labelled])
            link.register_device(key.public_key(), bind_node_key(key, dev), dev,
                                 revoked=False)
            nodes.append(SuperNode(key, f"127.0.0.1:{link.port}", ca.ca_pem, work / dev,
                                   node_config={"edgeloop-samples": str(path)}))
        try:
            for node in nodes:
                node.start(timeout_s=120)
            plans = {"deploy-fedavg": {}, "deploy-secagg": {"secagg": True}}
            for eps in (8.0, 1.0):
                plans[f"deploy-dp-eps{eps:g}"] = {
                    "dp_mode": "client", "dp_clip": args.dp_clip,
                    "dp_noise": noise_for_epsilon(eps, rounds)}
            for name, extra in plans.items():
                stamps = []
                began = time.perf_counter()
                res = deploy(link, model, DeployPlan(
                    rounds=rounds, min_nodes=clients, round_timeout=120, seed=seed,
                    **common, **extra), work / "runs",
                    on_round=_stamper(stamps))
                add(_rows(name, res, stamps, began, accuracy(res.model, xt, yt),
                          dp_noise=extra.get("dp_noise", 0.0)))
        finally:
            for node in nodes:
                node.stop()
    return rows
