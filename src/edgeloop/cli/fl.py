"""``edgeloop fl``: federated learning on Flower.

``fl simulate`` runs the same ClientApp and ServerApp a deployment runs, in process, over
simulated devices that label a share of their predictions (delayed feedback); the candidate is
evaluated against its base on the devices' held-out labels and, when it is better and a
registry is named, registered as a new version whose lineage names the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeloop.errors import InputError

app = typer.Typer(help="Federated learning on Flower: simulate rounds, register the result.",
                  no_args_is_help=True)


def _check_onnx(data: bytes, model: str) -> None:
    """Refuse a file that is not an ONNX model in one line naming it (not a protobuf trace)."""
    import onnx

    from edgeloop.errors import ModelFormatError

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelFormatError(f"--model {model!r}: expected an ONNX model ({e})") from e
    if not proto.HasField("graph") or not proto.opset_import:
        raise ModelFormatError(f"--model {model!r}: expected an ONNX model (no graph or opset)")


def _base(model: str, db: str | None, data: Path | None) -> tuple[bytes, str | None, Any, str]:
    """(model bytes, registry ref, base card, model name) from a file or ``NAME@VERSION``."""
    from edgeloop._io import read_bytes

    path = Path(model)
    if path.exists() or model.endswith(".onnx"):
        raw = read_bytes(path, "model")
        _check_onnx(raw, model)
        return raw, None, None, path.stem
    if "@" not in model:
        raise InputError(f"--model {model!r}: expected an ONNX file or a registry ref NAME@VERSION"
                         " (or NAME@ALIAS)")
    from edgeloop.registry import Registry

    with Registry(db, data) as reg:
        v = reg.resolve(model)
        return reg.read_blob(v.artifact.sha256), v.ref, v.card, v.model


def _finish(result: Any, *, dataset: str, seed: int, name: str, base_ref: str | None,
            base_card: Any, out: Path | None, register: str | None, no_register: bool,
            db: str | None, data_dir: Path | None, json_out: bool) -> None:
    """Write a finished run (simulated or deployed) and register an accepted candidate."""
    import numpy as np

    from edgeloop._io import atomic_write_bytes
    from edgeloop.cli._console import console, print_json
    from edgeloop.data import load_dataset
    from edgeloop.federated.server import candidate_card, candidate_reference

    dest = out or Path(f"fl-{result.run_id.removeprefix('fl-')}")
    dest.mkdir(parents=True, exist_ok=True)
    record = result.record_json()
    atomic_write_bytes(dest / "run.json", record)
    summary: dict[str, Any] = {"run_id": result.run_id, "gate": result.gate.to_dict(),
                               "participants": result.participants(),
                               "bytes_up": sum(r.bytes_up for r in result.rounds),
                               "out": str(dest), "registered": None}
    if result.gate.accepted:
        val = load_dataset(dataset, "val", seed=seed)
        if not isinstance(val.x, np.ndarray) or val.y is None:
            raise InputError(f"--dataset {dataset!r}: its val split has no labelled arrays")
        ref = candidate_reference(result, val.x, val.y, tuple(val.classes) or None)
        ref_bytes = ref.to_json()
        from edgeloop.artifacts import sha256_bytes

        card = candidate_card(result, name=register or name, base_card=base_card,
                              base_ref=base_ref, record_sha256=sha256_bytes(record),
                              reference_sha256=sha256_bytes(ref_bytes))
        atomic_write_bytes(dest / "model.onnx", result.model)
        atomic_write_bytes(dest / "reference.json", ref_bytes)
        atomic_write_bytes(dest / "model.card.json", card.to_json().encode())
        target = None if no_register else (register or (name if base_ref else None))
        if target is not None:
            from edgeloop.registry import Registry

            with Registry(db, data_dir) as reg:
                reg.blobs.put_file(dest / "run.json")
                reg.blobs.put_file(dest / "reference.json")
                v = reg.push(dest / "model.onnx", target, card=card,
                             description=card.description,
                             reason=f"federated run {result.run_id}")
            summary["registered"] = v.ref
    gate = result.gate
    if json_out:
        print_json(summary)
    elif gate.accepted:
        console.print(f"{result.run_id}: {gate.reason}")
        if summary["registered"]:
            console.print(f"registered {summary['registered']} · candidate, card, reference "
                          f"and run record in {dest}")
        else:
            console.print(f"accepted, not registered (no registry named) · candidate in {dest}")
    if not gate.accepted:
        from edgeloop.errors import GateError

        raise GateError(f"{result.run_id}: {gate.reason} · run record in {dest / 'run.json'}")


def simulate(
    model: str = typer.Option(..., "--model", help="The base: MODEL.onnx or a registry ref "
                              "NAME@VERSION / NAME@ALIAS."),
    dataset: str = typer.Option("textures", "--dataset", help="Built-in dataset or data file "
                                "the simulated devices see (its train split)."),
    clients: int = typer.Option(10, "--clients", help="Simulated devices (2..10000)."),
    rounds: int = typer.Option(5, "--rounds", help="Federated rounds (1..10000)."),
    partition: str = typer.Option("iid", "--partition",
                                  help="iid, dirichlet:ALPHA or drift:FRACTION."),
    strategy: str = typer.Option("fedavg", "--strategy", help="fedavg, fedprox, fedadam, "
                                 "fedmedian, fedtrimmedavg or krum."),
    compression: str = typer.Option("none", "--compression", help="none, int8 or topk:F."),
    trainer: str = typer.Option("head", "--trainer", help="head (numpy, the model's last "
                                "layer) or full (torch: the whole model; needs --checkpoint)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="The zoo checkpoint the "
                                           "model was exported from (--trainer full)."),
    epochs: int = typer.Option(5, "--epochs", help="Local epochs per round."),
    lr: float = typer.Option(0.05, "--lr", help="Local learning rate."),
    label_share: float = typer.Option(0.5, "--label-share",
                                      help="Share of predictions that get a delayed label."),
    fraction: float = typer.Option(1.0, "--fraction", help="Share of devices per round."),
    quorum: float = typer.Option(0.5, "--quorum", help="Share of the sampled devices whose "
                                 "updates a round needs to be aggregated."),
    stragglers: float = typer.Option(0.0, "--stragglers",
                                     help="Chance a device answers after the round closed."),
    poisoned: float = typer.Option(0.0, "--poisoned", help="Share of attacking devices."),
    dp_noise: float = typer.Option(0.0, "--dp-noise", help="Central DP noise multiplier."),
    dp_clip: float = typer.Option(0.0, "--dp-clip", help="Central DP clipping norm."),
    secagg: bool = typer.Option(False, "--secagg", help="Each round's fit under SecAgg+ "
                                "(Flower's SecAggPlusWorkflow; FedAvg, no compression)."),
    min_gain: float = typer.Option(0.0, "--min-gain", help="Accuracy the candidate must gain "
                                   "over the base on the devices' held-out labels."),
    samples: int | None = typer.Option(None, "--samples", help="Use at most this many "
                                       "training samples in all."),
    seed: int = typer.Option(0, "--seed", help="Seed for partitions, labels and sampling."),
    backend: str = typer.Option("inprocess", "--backend", help="inprocess, or ray (Flower's "
                                "simulation runtime: pip install 'edgeloop[simulation]')."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the candidate, its "
                                    "card, reference and run record (default: fl-RUN_ID)."),
    register: str | None = typer.Option(None, "--register", help="Register an accepted "
                                        "candidate as a version of this model (default for a "
                                        "registry base: its own model)."),
    no_register: bool = typer.Option(False, "--no-register", help="Never register."),
    db: str | None = typer.Option(None, "--db", help="Registry database URL."),
    data_dir: Path | None = typer.Option(None, "--data", help="Registry data directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Simulate federated rounds over a deployed model; register a better candidate."""
    import logging

    import numpy as np

    from edgeloop.cli._console import progress
    from edgeloop.data import load_dataset
    from edgeloop.federated.server import (
        SimulationPlan,
    )
    from edgeloop.federated.server import simulate as run_simulation

    plan = SimulationPlan(
        clients=clients, rounds=rounds, partition=partition, strategy=strategy.lower(),
        compression=compression, trainer=trainer, epochs=epochs, lr=lr, label_share=label_share,
        fraction=fraction, quorum=quorum, stragglers=stragglers, poisoned=poisoned,
        dp_noise=dp_noise, dp_clip=dp_clip, min_gain=min_gain, seed=seed, backend=backend,
        secagg=secagg)
    from edgeloop.federated.server import make_strategy

    make_strategy(plan.strategy)  # an unknown name fails before any work
    if samples is not None and samples < clients:
        raise InputError(f"--samples {samples}: expected at least one per client ({clients})")
    if trainer == "full" and checkpoint is None:
        raise InputError("--trainer full needs --checkpoint (the zoo checkpoint the model was "
                         "exported from)")
    torch_model = None
    if checkpoint is not None:
        from edgeloop.zoo import load_checkpoint

        torch_model = load_checkpoint(checkpoint)[0]
    base, base_ref, base_card, name = _base(model, db, data_dir)
    train = load_dataset(dataset, "train", seed=seed)
    if not isinstance(train.x, np.ndarray) or train.y is None:
        raise InputError(f"--dataset {dataset!r}: expected array inputs with labels")
    x, y = train.x, np.asarray(train.y)
    if samples is not None and samples < len(y):
        keep = np.random.default_rng(seed).permutation(len(y))[:samples]
        x, y = x[keep], y[keep]
    logging.getLogger("flwr").setLevel(logging.WARNING)
    with progress() as bar:
        task = bar.add_task("federated rounds", total=rounds, status="")

        def on_round(r: Any) -> None:
            loss = "" if r.train_loss is None else f" · loss {r.train_loss:.4f}"
            bar.update(task, completed=r.round, status=f"{r.answered}/{r.sampled} answered"
                       f"{' · aggregated' if r.aggregated else ' · ' + r.note}{loss}")

        result = run_simulation(base, x, y, plan, on_round=on_round, torch_model=torch_model)
    _finish(result, dataset=dataset, seed=seed, name=name, base_ref=base_ref,
            base_card=base_card, out=out, register=register, no_register=no_register, db=db,
            data_dir=data_dir, json_out=json_out)


def privacy(
    rounds: int = typer.Option(..., "--rounds", help="Federated rounds (1..1000000)."),
    dp: str = typer.Option("server", "--dp", help="server (server-side fixed clipping), "
                           "client (clipping on the device) or none."),
    noise: float | None = typer.Option(None, "--dp-noise", help="Gaussian noise multiplier; "
                                       "or give --epsilon to find it."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="A privacy budget: print "
                                         "the noise multiplier that spends at most this."),
    clip: float = typer.Option(1.0, "--dp-clip", help="L2 clipping norm of each update."),
    delta: float = typer.Option(1e-5, "--delta", help="DP delta."),
    secagg: bool = typer.Option(False, "--secagg", help="SecAgg+ (Flower's legacy workflow)."),
    strategy: str = typer.Option("fedavg", "--strategy", help="The run's strategy."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check a privacy combination and print the epsilon a run spends (or the noise for one)."""
    from edgeloop.cli._console import console, print_json
    from edgeloop.federated.server import PrivacyPlan, noise_for_epsilon

    if (noise is None) == (epsilon is None):
        raise InputError("fl privacy: expected exactly one of --dp-noise or --epsilon")
    if dp.lower() == "none":
        raise InputError("--dp none: nothing to account; expected server or client")
    if noise is None:
        assert epsilon is not None
        noise = noise_for_epsilon(epsilon, rounds, delta)
    plan = PrivacyPlan(dp=dp, noise=noise, clip=clip, delta=delta, secagg=secagg,
                       strategy=strategy)
    spent = plan.spend(rounds)
    assert spent is not None
    if json_out:
        print_json({"dp": plan.dp, "secagg": secagg, "strategy": plan.strategy,
                    "clip": clip, **spent.record()})
        return
    console.print(f"{plan.dp}-side DP, noise {spent.noise:.4g}, clip {clip:g}, {rounds} rounds: "
                  f"epsilon {spent.epsilon:.3f} at delta {delta:g} ({spent.method})")


def node_key(
    state: Path = typer.Option(..., "--state", help="The enrolled agent's state directory."),
    key_out: Path | None = typer.Option(None, "--key-out", help="Write the private node key "
                                        "(OpenSSH, 0600) here, for flower-supernode "
                                        "--auth-supernode-private-key."),
    json_out: bool = typer.Option(False, "--json", help="Print the binding as JSON."),
) -> None:
    """Print this device's Flower node key, derived from and signed by its enrolled key."""
    from edgeloop._io import atomic_write_bytes
    from edgeloop.agent import StateDir
    from edgeloop.cli._console import console, print_json
    from edgeloop.federated.device import bind_node_key, node_key_openssh
    from edgeloop.federated.device import node_key as derive_node_key

    if not (state / "keys" / "signing.pem").is_file():
        raise InputError(f"--state {str(state)!r}: expected an agent state directory with its "
                         "device key (keys/signing.pem)")
    store = StateDir(state)
    identity = store.load_identity()
    if identity is None:
        raise InputError(f"--state {str(state)!r}: the agent is not enrolled (no identity)")
    signing, _ = store.keys()
    binding = bind_node_key(signing, str(identity["device_id"]))
    if key_out is not None:
        atomic_write_bytes(key_out, node_key_openssh(derive_node_key(signing)), 0o600)
    if json_out:
        print_json(binding)
        return
    console.print(f"{binding['device_id']}: {binding['node_public_key']}")


def _arrays(name: str, split: str, seed: int, option: str) -> tuple[Any, Any]:
    import numpy as np

    from edgeloop.data import load_dataset

    ds = load_dataset(name, split, seed=seed)
    if not isinstance(ds.x, np.ndarray) or ds.y is None:
        raise InputError(f"{option} {name!r}: expected array inputs with labels in its {split} "
                         "split")
    return ds.x, np.asarray(ds.y)


def schedule(
    model: str = typer.Option(..., "--model", help="The base: MODEL.onnx or a registry ref "
                              "NAME@VERSION / NAME@ALIAS."),
    central: str | None = typer.Option(None, "--central", help="Built-in dataset or data file "
                                       "held centrally (train and val splits): retrain the "
                                       "head on it first. Omit to skip central retraining."),
    dataset: str = typer.Option("textures", "--dataset", help="Built-in dataset or data file "
                                "the simulated devices see (its train split)."),
    rounds: int = typer.Option(3, "--rounds", help="Federated rounds (0: none)."),
    personalize: bool = typer.Option(True, "--personalize/--no-personalize",
                                     help="Fit a personal head on every simulated device."),
    clients: int = typer.Option(10, "--clients", help="Simulated devices (2..10000)."),
    partition: str = typer.Option("iid", "--partition",
                                  help="iid, dirichlet:ALPHA or drift:FRACTION."),
    strategy: str = typer.Option("fedavg", "--strategy", help="The federated strategy."),
    central_epochs: int = typer.Option(20, "--central-epochs",
                                       help="Epochs of central head retraining (1..1000)."),
    lr: float = typer.Option(0.05, "--lr", help="Learning rate (central and local)."),
    label_share: float = typer.Option(0.5, "--label-share",
                                      help="Share of predictions that get a delayed label."),
    samples: int | None = typer.Option(None, "--samples", help="Use at most this many device "
                                       "samples (and as many central ones)."),
    seed: int = typer.Option(0, "--seed", help="Seed for partitions, labels and sampling."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the models and the "
                                    "schedule record (default: hybrid-ID)."),
    register: str | None = typer.Option(None, "--register", help="Register each accepted "
                                        "model step as a version of this model (default for a "
                                        "registry base: its own model)."),
    no_register: bool = typer.Option(False, "--no-register", help="Never register."),
    db: str | None = typer.Option(None, "--db", help="Registry database URL."),
    data_dir: Path | None = typer.Option(None, "--data", help="Registry data directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Hybrid schedule: central retraining, federated rounds, on-device personalization; each
    accepted model step registered with its lineage (parent version and schedule record)."""
    import dataclasses
    import logging

    import numpy as np

    from edgeloop._io import atomic_write_bytes
    from edgeloop.agent import PersonalConfig
    from edgeloop.artifacts import LineageRef, ModelCard, sha256_bytes
    from edgeloop.cli._console import console, print_json
    from edgeloop.federated.server import (
        SchedulePlan,
        SimulationPlan,
        hybrid_schedule,
        make_strategy,
    )

    if not 0 <= rounds <= 10_000:
        raise InputError(f"--rounds {rounds}: expected 0..10000")
    if central is not None and not 1 <= central_epochs <= 1000:
        raise InputError(f"--central-epochs {central_epochs}: expected 1..1000")
    devices = SimulationPlan(clients=clients, rounds=max(rounds, 1), partition=partition,
                             strategy=strategy.lower(), lr=lr, label_share=label_share,
                             seed=seed)
    make_strategy(devices.strategy)
    plan = SchedulePlan(central_epochs=central_epochs if central is not None else 0,
                        central_lr=lr, federated=devices if rounds else None,
                        personalize=personalize, personal=PersonalConfig(), devices=devices,
                        seed=seed)
    base, base_ref, base_card, name = _base(model, db, data_dir)
    x, y = _arrays(dataset, "train", seed, "--dataset")
    cdata = None
    if central is not None:
        cdata = (_arrays(central, "train", seed, "--central"),
                 _arrays(central, "val", seed, "--central"))
    if samples is not None:
        if samples < clients:
            raise InputError(f"--samples {samples}: expected at least one per client ({clients})")
        keep = np.random.default_rng(seed).permutation(len(y))[:samples]
        x, y = x[keep], y[keep]
        if cdata is not None:
            (cx, cy), val = cdata
            ck = np.random.default_rng(seed + 1).permutation(len(cy))[:samples]
            cdata = ((cx[ck], cy[ck]), val)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    result = hybrid_schedule(base, central=cdata, devices=(x, y), plan=plan)
    dest = out or Path(result.schedule_id)
    dest.mkdir(parents=True, exist_ok=True)
    record = result.record_json()
    atomic_write_bytes(dest / "schedule.json", record)
    target = None if no_register else (register or (name if base_ref else None))
    registered: list[str] = []
    parent_ref, parent_card = base_ref, base_card
    for step in result.steps:
        if step.sha256 is None:
            continue
        blob = result.models[step.sha256]
        path = dest / f"{step.kind}.onnx"
        atomic_write_bytes(path, blob)
        lineage = (LineageRef("parent_version", step.parent_sha256, name=parent_ref),
                   LineageRef("hybrid_schedule", sha256_bytes(record),
                              name=f"{result.schedule_id}:{step.kind}"))
        fields: dict[str, Any] = {
            "name": target or name, "sha256": step.sha256, "size_bytes": len(blob),
            "metrics": {f"{step.kind}_{k}": v for k, v in step.metrics.items()},
            "lineage": lineage,
            "description": f"hybrid schedule {result.schedule_id}: {step.kind} step",
        }
        card = (ModelCard(**fields) if parent_card is None
                else dataclasses.replace(parent_card, **fields, recipe=None))
        if target is not None:
            from edgeloop.registry import Registry

            with Registry(db, data_dir) as reg:
                reg.blobs.put_file(dest / "schedule.json")
                v = reg.push(path, target, card=card, description=card.description,
                             reason=f"hybrid schedule {result.schedule_id}: {step.kind}")
            registered.append(v.ref)
            parent_ref, parent_card = v.ref, card
    summary = {"schedule_id": result.schedule_id, "out": str(dest), "registered": registered,
               "steps": [{"kind": s.kind, "accepted": s.accepted, "sha256": s.sha256,
                          "metrics": s.metrics} for s in result.steps]}
    if json_out:
        print_json(summary)
    else:
        for s in result.steps:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in s.metrics.items() if "accuracy" in k)
            console.print(f"{s.kind}: {'accepted' if s.accepted else 'not accepted'} · {shown}")
        console.print(f"{result.schedule_id}: registered {', '.join(registered) or 'nothing'} "
                      f"· record in {dest / 'schedule.json'}")
    rejected = [_rejection(s) for s in result.steps if s.kind != "personalize" and not s.accepted]
    if rejected:
        from edgeloop.errors import GateError

        raise GateError(f"{result.schedule_id}: {'; '.join(rejected)} · registered "
                        f"{', '.join(registered) or 'nothing'} · record in "
                        f"{dest / 'schedule.json'}")


def _rejection(step: Any) -> str:
    """One clause saying why a schedule's model step was not accepted."""
    reason = step.detail.get("reason")
    if reason:
        return f"{step.kind} step: {reason}"
    m = step.metrics
    return (f"{step.kind} step not registered: accuracy {m.get('accuracy', float('nan')):.4f} "
            f"below its parent's {m.get('base_accuracy', float('nan')):.4f} on the held-out "
            "split")


def superlink(
    tls_cert: Path = typer.Option(..., "--tls-cert", help="The fleet server's certificate."),
    tls_key: Path = typer.Option(..., "--tls-key", help="Its private key."),
    tls_ca: Path = typer.Option(..., "--tls-ca", help="The fleet's CA (devices pin it)."),
    state: Path = typer.Option(Path("superlink"), "--state", help="Directory for the "
                               "SuperLink's database and log."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(9093, "--port", help="Port (Fleet and Control API); 0: free."),
) -> None:
    """Run a Flower SuperLink beside the fleet server (TLS, node authentication) until
    interrupted."""
    import signal
    import threading

    from edgeloop.cli._console import console
    from edgeloop.federated.server import SuperLink

    link = SuperLink(tls_cert, tls_key, tls_ca, state, host=host, port=port)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with link:
        console.print(f"SuperLink on {link.url} (TLS, node authentication; log "
                      f"{link.log_file})")
        while not done.wait(1.0):
            if not link.running:
                raise InputError(f"the SuperLink on {link.url} stopped; see {link.log_file}")


def _cohort(cohort: list[str]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for item in cohort:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InputError(f"--cohort {item!r:.80}: expected LABEL=VALUE")
        wanted[key] = value
    return wanted


def _enrolled_bindings(fleet_db: str | None, bindings: Path | None, wanted: dict[str, str],
                       ) -> tuple[list[tuple[Any, dict[str, Any], str]], int, int]:
    """(enrolled key, binding, device id) of each non-revoked device in the cohort whose node
    key binding is in ``bindings`` (a directory; None: the ones devices sent the fleet
    server); and how many revoked and unknown devices were left out."""
    import json

    from edgeloop.loop import enrolled_bindings

    if bindings is None:
        return enrolled_bindings(fleet_db, wanted)
    if not bindings.is_dir():
        raise InputError(f"--bindings {str(bindings)!r}: expected a directory of node key "
                         "bindings (edgeloop fl node-key --json on each device)")
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(bindings.glob("*.json"))[:100_000]:
        try:
            data = json.loads(path.read_bytes()[:8192])
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("device_id"), str):
            found[data["device_id"]] = data
    return enrolled_bindings(fleet_db, wanted, found)


def start(
    model: str = typer.Argument(..., help="The base: a registry ref NAME@VERSION / NAME@ALIAS "
                                "(or MODEL.onnx)."),
    rounds: int = typer.Option(3, "--rounds", help="Federated rounds (1..10000)."),
    cohort: list[str] = typer.Option([], "--cohort", help="Only devices with this label "
                                     "(LABEL=VALUE; repeat to narrow)."),
    bindings: Path | None = typer.Option(None, "--bindings", help="Directory of the devices' "
                                         "node key bindings (edgeloop fl node-key --json); "
                                         "default: the ones devices sent the fleet server."),
    advertise: str | None = typer.Option(None, "--advertise", help="HOST:PORT devices connect "
                                         "to (default: --host:--port)."),
    fleet_db: str | None = typer.Option(None, "--fleet-db", help="The fleet server's database "
                                        "URL (enrolled and revoked devices)."),
    tls_cert: Path = typer.Option(..., "--tls-cert", help="The fleet server's certificate."),
    tls_key: Path = typer.Option(..., "--tls-key", help="Its private key."),
    tls_ca: Path = typer.Option(..., "--tls-ca", help="The fleet's CA (devices pin it)."),
    state: Path = typer.Option(Path("superlink"), "--state", help="Directory for the "
                               "SuperLink's database, log and the runs' files."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the SuperLink listens on."),
    port: int = typer.Option(9093, "--port", help="SuperLink port; 0: a free one."),
    min_nodes: int = typer.Option(2, "--min-nodes", help="Connected SuperNodes a round needs."),
    strategy: str = typer.Option("fedavg", "--strategy", help="The federated strategy."),
    epochs: int = typer.Option(5, "--epochs", help="Local epochs per round."),
    lr: float = typer.Option(0.05, "--lr", help="Local learning rate."),
    compression: str = typer.Option("none", "--compression", help="none, int8 or topk:F."),
    quorum: float = typer.Option(0.5, "--quorum", help="Share of the sampled devices whose "
                                 "updates a round needs to be aggregated."),
    round_timeout: float = typer.Option(120.0, "--round-timeout",
                                        help="Seconds a round waits for replies."),
    dp: str = typer.Option("server", "--dp", help="Where updates are clipped with "
                           "--dp-noise: server, or client (on the device)."),
    dp_noise: float = typer.Option(0.0, "--dp-noise", help="DP noise multiplier."),
    dp_clip: float = typer.Option(0.0, "--dp-clip", help="DP clipping norm."),
    secagg: bool = typer.Option(False, "--secagg", help="Each round's fit under SecAgg+ "
                                "(Flower's SecAggPlusWorkflow; fedavg, --dp client only, no "
                                "compression)."),
    superlink_restarts: int = typer.Option(1, "--superlink-restarts", help="Times a SuperLink "
                                           "that stops mid-run is started again and the run "
                                           "resumed from its last round (0..10)."),
    min_gain: float = typer.Option(0.0, "--min-gain", help="Accuracy the candidate must gain "
                                   "over the base on the devices' held-out labels."),
    dataset: str = typer.Option("textures", "--dataset", help="Held-out data for the "
                                "candidate's monitoring reference (its val split)."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and local training."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the candidate, its "
                                    "card, reference and run record (default: fl-RUN_ID)."),
    register: str | None = typer.Option(None, "--register", help="Register an accepted "
                                        "candidate as a version of this model."),
    no_register: bool = typer.Option(False, "--no-register", help="Never register."),
    db: str | None = typer.Option(None, "--db", help="Registry database URL."),
    data_dir: Path | None = typer.Option(None, "--data", help="Registry data directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Federated rounds on real agents: start a SuperLink (TLS, node authentication) with the
    node keys of enrolled, non-revoked devices, submit the run, register a better candidate."""
    import logging

    from edgeloop.cli._console import console, progress
    from edgeloop.errors import AuthError, IntegrityError
    from edgeloop.federated.server import DeployPlan, SuperLink, deploy
    from edgeloop.loop import announce_run

    plan = DeployPlan(rounds=rounds, strategy=strategy.lower(), epochs=epochs, lr=lr,
                      compression=compression, quorum=quorum, min_nodes=min_nodes,
                      round_timeout=round_timeout, dp_noise=dp_noise, dp_clip=dp_clip,
                      dp_mode=dp.lower(), min_gain=min_gain, seed=seed, secagg=secagg)
    if not 0 <= superlink_restarts <= 10:
        raise InputError(f"--superlink-restarts {superlink_restarts}: expected 0..10")
    link = SuperLink(tls_cert, tls_key, tls_ca, state, host=host, port=port)
    wanted = _cohort(cohort)
    if advertise is not None and (advertise.count(":") != 1 or
                                  not advertise.rsplit(":", 1)[1].isdigit()):
        raise InputError(f"--advertise {advertise!r:.80}: expected HOST:PORT")
    devices, revoked, unknown = _enrolled_bindings(fleet_db, bindings, wanted)
    if len(devices) < min_nodes:
        raise InputError(f"--min-nodes {min_nodes}: only {len(devices)} enrolled, non-revoked "
                         f"devices in the cohort left a node key binding in {str(bindings)!r}")
    base, base_ref, base_card, name = _base(model, db, data_dir)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    with link:
        registered = refused = 0
        for key, binding, device_id in devices:
            try:
                link.register_device(key, binding, device_id, revoked=False)
                registered += 1
            except (AuthError, IntegrityError):
                refused += 1
        if not json_out:
            console.print(f"SuperLink on {link.url}: {registered} node keys registered, "
                          f"{refused} bindings refused, {revoked} revoked and {unknown} unknown "
                          "devices left out")
        with progress() as bar:
            task = bar.add_task("federated rounds", total=rounds, status="waiting for nodes")

            def on_round(r: Any) -> None:
                bar.update(task, completed=r.round, status=f"{r.answered}/{r.sampled} answered"
                           f"{' · aggregated' if r.aggregated else ' · ' + r.note}")

            with announce_run(fleet_db, advertise or f"{link.host}:{link.port}", wanted):
                result = deploy(link, base, plan, link.state_dir / "runs", on_round=on_round,
                                restarts=superlink_restarts)
    result.extra |= {"node_keys_registered": registered, "bindings_refused": refused,
                     "revoked_left_out": revoked}
    _finish(result, dataset=dataset, seed=seed, name=name, base_ref=base_ref,
            base_card=base_card, out=out, register=register, no_register=no_register, db=db,
            data_dir=data_dir, json_out=json_out)


app.command("simulate")(simulate)
app.command("privacy")(privacy)
app.command("node-key")(node_key)
app.command("superlink")(superlink)
app.command("schedule")(schedule)
app.command("start")(start)
