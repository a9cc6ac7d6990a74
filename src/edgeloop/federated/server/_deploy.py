"""Federated rounds on real agents: a run submitted to a :class:`SuperLink`, its ServerApp in
Flower's ``flwr-serverapp`` process, the ClientApp in each enrolled device's SuperNode.

::

    plan = DeployPlan(rounds=3, strategy="fedavg", min_nodes=3)
    result = deploy(link, model_bytes, plan, work_dir, on_round=print)
    result.gate.accepted, result.record()          # a SimulationResult, as fl simulate's

The run is a Flower App Bundle (FAB) built here: a ``pyproject.toml`` whose components are
``edgeloop.federated.server._deploy:app`` (this module's ServerApp) and
``edgeloop.federated.device._deployed:app`` (the devices' ClientApp), and whose run config
carries the plan, the base model's path and the directory the ServerApp writes to. Runtime
dependency installation stays disabled, so the SuperLink's and the SuperNodes' environments
must already hold edgeloop and Flower. The ServerApp runs the same rounds and federated
evaluation gate as the simulation (:func:`run_rounds`, :func:`evaluate_gate`); it writes one
line per round to ``progress.jsonl`` (what :func:`deploy` reports as rounds close) and, at the
end, ``outcome.json`` and ``arrays.npz``. The submitting process (beside the SuperLink) builds
the candidate and its record from those.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from edgeloop._io import atomic_write_bytes
from edgeloop.artifacts import sha256_bytes
from edgeloop.errors import FleetError, InputError
from edgeloop.federated.device import Head, parse_compression
from edgeloop.federated.server._onnx_head import read_head, with_embedding, write_head
from edgeloop.federated.server._privacy import PrivacyPlan
from edgeloop.federated.server._serverapp import GateResult, evaluate_gate, run_rounds
from edgeloop.federated.server._simulate import SimulationPlan, SimulationResult
from edgeloop.federated.server._strategy import STRATEGIES, RoundGuard, RoundLog, make_strategy
from edgeloop.federated.server._superlink import SuperLink

__all__ = ["DeployPlan", "app", "deploy", "deployment_fab"]

SERVER_APP = "edgeloop.federated.server._deploy:app"
CHECKPOINT = "checkpoint.npz"  # the global arrays after the last aggregated round
CLIENT_APP = "edgeloop.federated.device._deployed:app"


@dataclass(frozen=True)
class DeployPlan:
    """One deployed federated run (the head trainer on each device's delayed labels)."""

    rounds: int = 3
    strategy: str = "fedavg"
    epochs: int = 5
    lr: float = 0.05
    batch_size: int = 32
    compression: str = "none"
    fraction: float = 1.0  # of connected nodes sampled per round
    quorum: float = 0.5  # of the sampled nodes whose valid updates a round needs
    min_nodes: int = 2  # connected nodes a round waits for
    round_timeout: float = 120.0  # seconds a round waits for replies
    proximal_mu: float = 0.01
    min_gain: float = 0.0
    dp_noise: float = 0.0  # Gaussian noise multiplier (added on the server)
    dp_clip: float = 0.0  # L2 clipping norm of each update
    dp_mode: str = "server"  # where updates are clipped: server, or client (on the device)
    secagg: bool = False  # each round's fit under Flower's SecAgg+ (fedavg; client DP only)
    seed: int = 0

    def __post_init__(self) -> None:
        parse_compression(self.compression)
        if self.strategy not in STRATEGIES:
            raise InputError(f"strategy {self.strategy!r:.40}: expected one of "
                             f"{', '.join(STRATEGIES)}")
        checks = {
            "rounds": 1 <= self.rounds <= 10_000, "epochs": 1 <= self.epochs <= 1000,
            "lr": 0 < self.lr <= 10, "batch_size": 1 <= self.batch_size <= 65_536,
            "fraction": 0 < self.fraction <= 1, "quorum": 0 < self.quorum <= 1,
            "min_nodes": 1 <= self.min_nodes <= 100_000,
            "round_timeout": 0 < self.round_timeout <= 86_400,
            "proximal_mu": 0 < self.proximal_mu <= 100, "min_gain": -1 <= self.min_gain <= 1,
            "dp_noise": 0 <= self.dp_noise <= 100, "dp_clip": 0 <= self.dp_clip <= 1e6,
        }
        bad = [k for k, ok in checks.items()
               if not ok or not math.isfinite(float(getattr(self, k)))]
        if bad:
            raise InputError(f"deployment: {bad[0]}={getattr(self, bad[0])!r} out of range")
        if (self.dp_noise > 0) != (self.dp_clip > 0):
            raise InputError("differential privacy needs both dp_noise > 0 and dp_clip > 0")
        if self.dp_mode not in ("server", "client"):
            raise InputError(f"--dp {self.dp_mode!r:.40}: expected server or client")
        if self.dp_noise > 0 or self.secagg:
            self.privacy().check()
        if self.secagg and self.compression != "none":
            raise InputError(f"SecAgg+ with compression {self.compression!r:.40}: the masked "
                             "sum needs the dense update; use --compression none")

    def privacy(self) -> PrivacyPlan:
        return PrivacyPlan(dp=self.dp_mode if self.dp_noise > 0 else "none",
                           noise=self.dp_noise, clip=self.dp_clip, strategy=self.strategy,
                           secagg=self.secagg)

    def privacy_record(self) -> dict[str, Any]:
        """What the run's record says of privacy: mechanism, parameters, epsilon spent."""
        secagg = ("SecAgg+ (Flower's SecAggPlusWorkflow): the server saw only masked updates "
                  "and their weighted mean")
        if self.dp_noise == 0:
            return {"mechanism": secagg if self.secagg else "none"}
        spent = self.privacy().spend(self.rounds)
        assert spent is not None
        where = "on the device" if self.dp_mode == "client" else "on the server"
        dp = f"DP, fixed clipping {where}, Gaussian noise on the server"
        return {"mechanism": f"{dp}; {secagg}" if self.secagg else dp,
                "noise_multiplier": self.dp_noise, "clipping_norm": self.dp_clip,
                "epsilon": round(spent.epsilon, 4), "delta": spent.delta,
                "accountant": spent.method}

    def sampled(self, nodes: int) -> int:
        return max(1, int(nodes * self.fraction))

    def quorum_count(self, nodes: int) -> int:
        return max(1, math.ceil(self.quorum * self.sampled(nodes)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run_config(plan: DeployPlan, model: Path, out: Path, resume_round: int = 0,
                ) -> dict[str, Any]:
    return {"model": str(model), "out": str(out), "resume-round": resume_round,
            **{k.replace("_", "-"): v for k, v in plan.to_dict().items()}}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def deployment_fab(plan: DeployPlan, model: Path, out: Path, *, resume_round: int = 0) -> bytes:
    """The run's Flower App Bundle: the edgeloop ServerApp and ClientApp and the run config;
    ``resume_round`` > 0 continues a run after that many rounds from ``out``'s checkpoint."""
    from flwr.cli.build import build_fab_from_files

    config = "\n".join(f'"{k}" = {_toml_value(v)}'
                       for k, v in _run_config(plan, model, out, resume_round).items())
    pyproject = (
        '[project]\nname = "edgeloop-fl"\nversion = "1.0.0"\n'
        'description = "edgeloop federated rounds"\nlicense = "Apache-2.0"\n\n'
        '[tool.flwr.app]\npublisher = "edgeloop"\n\n'
        f'[tool.flwr.app.components]\nserverapp = "{SERVER_APP}"\n'
        f'clientapp = "{CLIENT_APP}"\n\n[tool.flwr.app.config]\n{config}\n')
    return build_fab_from_files({"pyproject.toml": pyproject.encode()})[0]


# ---- the ServerApp (runs in Flower's flwr-serverapp process) --------------------------------

app = ServerApp()


def _plan_from(run_config: dict[str, Any]) -> DeployPlan:
    fields = DeployPlan.__dataclass_fields__
    values = {k: run_config[k.replace("_", "-")] for k in fields
              if k.replace("_", "-") in run_config}
    for k in ("rounds", "epochs", "batch_size", "min_nodes", "seed"):
        if k in values:
            values[k] = int(values[k])
    if "secagg" in values:
        values["secagg"] = bool(values["secagg"])
    return DeployPlan(**values)


@app.main()
def _main(grid: Grid, context: Context) -> None:
    import random

    cfg = dict(context.run_config)
    plan = _plan_from(cfg)
    out = Path(str(cfg["out"]))
    served = with_embedding(Path(str(cfg["model"])).read_bytes())
    initial = {k: np.asarray(v) for k, v in read_head(served).to_arrays().items()}
    offset = int(cfg.get("resume-round", 0))
    start = initial  # a resumed run starts from the last aggregated round's global arrays
    if offset > 0 and (out / CHECKPOINT).exists():
        with np.load(out / CHECKPOINT, allow_pickle=False) as data:
            start = {k: np.asarray(data[k]) for k in initial}
    deadline = time.monotonic() + plan.round_timeout
    nodes = list(grid.get_node_ids())
    while len(nodes) < plan.min_nodes and time.monotonic() < deadline:
        time.sleep(0.5)
        nodes = list(grid.get_node_ids())
    # a round waits only for the quorum to be connected: a device that drops out mid-run
    # leaves the rounds going with the others (RoundGuard refuses to aggregate below it)
    inner = make_strategy(plan.strategy, fraction=plan.fraction,
                          min_nodes=plan.quorum_count(len(nodes)),
                          proximal_mu=plan.proximal_mu)
    if plan.dp_noise > 0:
        from flwr.serverapp.strategy import (
            DifferentialPrivacyClientSideFixedClipping,
            DifferentialPrivacyServerSideFixedClipping,
        )

        wrapper = (DifferentialPrivacyClientSideFixedClipping if plan.dp_mode == "client"
                   else DifferentialPrivacyServerSideFixedClipping)
        inner = wrapper(inner, noise_multiplier=plan.dp_noise, clipping_norm=plan.dp_clip,
                        num_sampled_clients=plan.sampled(len(nodes)))
    guard = RoundGuard(inner, quorum=plan.quorum_count(len(nodes)))
    progress = out / "progress.jsonl"

    def on_round(log: RoundLog) -> None:
        log.round += offset
        expected = plan.sampled(len(nodes))
        if log.sampled < expected:  # devices that dropped out of the run since it started
            gone = (f"{expected - log.sampled} of the {expected} devices sampled at the start "
                    "are no longer connected")
            log.note = f"{gone}; {log.note}" if log.note else gone
        with open(progress, "a") as f:
            f.write(json.dumps(log.to_dict()) + "\n")

    def checkpoint(server_round: int, arrays: dict[str, np.ndarray]) -> None:
        atomic_write_bytes(out / CHECKPOINT, _npz(arrays))

    random.seed(plan.seed + offset)
    np.random.seed(plan.seed + offset)
    train_config = {"trainer": "head", "epochs": plan.epochs, "lr": plan.lr,
                    "batch-size": plan.batch_size, "compression": plan.compression,
                    "seed": plan.seed + offset}
    remaining = max(plan.rounds - offset, 1)
    if plan.secagg:
        from edgeloop.federated.server._secagg import SecAggSettings, secagg_rounds

        done = secagg_rounds(grid, start, rounds=remaining, train_config=train_config,
                             timeout=plan.round_timeout, quorum=plan.quorum_count(len(nodes)),
                             fraction=plan.fraction, settings=SecAggSettings(),
                             dp_noise=plan.dp_noise, dp_clip=plan.dp_clip, on_round=on_round,
                             checkpoint=checkpoint)
    else:
        done = run_rounds(grid, guard, start, rounds=remaining, train_config=train_config,
                          timeout=plan.round_timeout, on_round=on_round, checkpoint=checkpoint)
    gate = evaluate_gate(grid, done.arrays, initial, min_gain=plan.min_gain,
                         timeout=plan.round_timeout)
    atomic_write_bytes(out / "arrays.npz", _npz(done.arrays))
    before = [r for r in _rounds(progress) if r.round <= offset]  # the interrupted run's
    atomic_write_bytes(out / "outcome.json", json.dumps({
        "nodes": len(nodes), "rounds": [r.to_dict() for r in before + done.rounds],
        "round_accuracy": {str(k + offset): v for k, v in done.round_accuracy.items()},
        "gate": gate.to_dict()}).encode())


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


# ---- submitting a run and waiting for it ---------------------------------------------------

def _start(link: SuperLink, fab: bytes) -> int:
    from flwr.common.serde import fab_to_proto
    from flwr.proto.control_pb2 import StartRunRequest
    from flwr.supercore.fab import Fab

    client = link._control()
    try:
        answer = client.StartRun(request=StartRunRequest(
            fab=fab_to_proto(Fab(hashlib.sha256(fab).hexdigest(), fab, {}))))
    except Exception as e:  # Flower's transport and API errors: one line
        raise FleetError(f"SuperLink on {link.url} refused the run: {type(e).__name__}: "
                         f"{str(e)[:200]}") from None
    finally:
        client.close()
    if not answer.HasField("run_id"):
        raise FleetError(f"SuperLink on {link.url} did not start the run")
    return int(answer.run_id)


def _status(link: SuperLink, run_id: int) -> tuple[str, str, str]:
    from flwr.proto.control_pb2 import ListRunsRequest

    client = link._control()
    try:
        answer = client.ListRuns(request=ListRunsRequest(run_id=run_id))
    finally:
        client.close()
    run = answer.run_dict[run_id]
    return run.status.status, run.status.sub_status, run.status.details


def _rounds(path: Path) -> list[RoundLog]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [RoundLog(**json.loads(line)) for line in lines if line.strip()]


def _poll(link: SuperLink, run_id: int) -> tuple[str, str, str] | None:
    """The run's status, or None when the SuperLink did not answer (stopped or restarting)."""
    try:
        return _status(link, run_id)
    except FleetError:
        return None
    except Exception:  # Flower's HTTP/gRPC transport errors while the SuperLink is down
        return None


def deploy(link: SuperLink, model: bytes, plan: DeployPlan, work_dir: str | Path, *,
           timeout_s: float | None = None,
           on_round: Callable[[RoundLog], None] | None = None,
           restarts: int = 1, run_key: str | None = None) -> SimulationResult:
    """Submit ``plan`` over ``model`` (base ONNX bytes) to the running ``link``, wait for the
    run to finish, and return its result (the candidate, the gate, the rounds) in the same
    form as :func:`simulate` does. ``work_dir`` holds the base model and what the ServerApp
    writes; it must be reachable by the SuperLink's ServerApp process (the same host).

    A SuperLink that stops during the run (it crashed, or was stopped) is started again on its
    port with its database, up to ``restarts`` times. Flower 1.42's run does not survive that
    (its ServerApp process loses the SuperLink mid-round and the run is recorded as failed), so
    the run is resumed: submitted again with ``resume-round`` = the rounds already done, its
    ServerApp starting from the checkpoint of the last aggregated round. What happened is in the
    result's ``superlink_events``; a run that cannot be resumed fails with a
    :class:`FleetError` saying after which round the SuperLink stopped and what Flower
    recorded.

    ``run_key`` names the run's directory (``work_dir/fl-KEY``; default a fresh one) so that
    a submitter that died mid-run can be followed by another on any SuperLink: a run whose
    directory holds a finished outcome is not run again (its result is read back); one with a
    checkpoint is resumed after the rounds its ``progress.jsonl`` lists, from the checkpoint of
    the last aggregated round; one with neither starts over."""
    start = time.perf_counter()
    if run_key is not None and (not run_key.replace("-", "").isalnum() or len(run_key) > 64):
        raise InputError(f"run key {run_key!r:.80}: expected letters, digits and '-'")
    run_key = run_key or secrets.token_hex(6)
    out = Path(work_dir).resolve() / f"fl-{run_key}"
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "base.onnx"
    served = with_embedding(model)
    base_head = read_head(served)
    events: list[str] = []
    if (out / "outcome.json").exists() and (out / "arrays.npz").exists() \
            and model_path.exists() and model_path.read_bytes() == model:
        events.append("the run had finished before this submitter started: its outcome read "
                      "back, not run again")
        return _result(out, link, plan, model, base_head, served, run_key, None, events,
                       start)
    for stale in ("outcome.json", "arrays.npz"):
        (out / stale).unlink(missing_ok=True)
    atomic_write_bytes(model_path, model)
    before = len(_rounds(out / "progress.jsonl")) if (out / CHECKPOINT).exists() else 0
    if before == 0:
        (out / "progress.jsonl").unlink(missing_ok=True)
    else:
        events.append(f"resumed after round {before} from the checkpoint an earlier submitter "
                      "left")
    run_id = _start(link, deployment_fab(plan, model_path, out, resume_round=before))
    limit = timeout_s if timeout_s is not None else plan.round_timeout * (plan.rounds + 2) + 120
    deadline = time.monotonic() + limit
    seen = before
    status = sub = details = ""
    restarted = resumed = 0
    silent_since: float | None = None
    while time.monotonic() < deadline:
        rounds = _rounds(out / "progress.jsonl")
        for log in rounds[seen:]:
            if on_round is not None:
                on_round(log)
        seen = len(rounds)
        answer = _poll(link, run_id)
        if answer is None:
            if link.running and (silent_since is None
                                 or time.monotonic() - silent_since < 30):
                silent_since = silent_since or time.monotonic()
                time.sleep(0.5)  # up but not answering: give it a moment
                continue
            code = link.process.returncode if link.process is not None else None
            what = (f"the SuperLink on {link.url} stopped (exit {code}) after round {seen}"
                    if not link.running else
                    f"the SuperLink on {link.url} stopped answering after round {seen}")
            if restarted >= restarts:
                raise FleetError(f"run {run_id}: {what}; not restarted again ({restarts} "
                                 f"restarts allowed); see {link.log_file}")
            link.restart()
            restarted += 1
            events.append(f"{what}; restarted with its database")
            silent_since = None
            continue
        silent_since = None
        status, sub, details = answer
        if status == "finished" and sub != "completed" and resumed < restarted:
            resumed += 1
            old, run_id = run_id, _start(link, deployment_fab(plan, model_path, out,
                                                              resume_round=seen))
            events.append(f"run {old} {sub} after the restart ({details[:120] or 'no details'})"
                          f"; resumed as run {run_id} after round {seen}")
            deadline = max(deadline, time.monotonic() + plan.round_timeout
                           * (plan.rounds - seen + 2) + 120)
            continue
        if status == "finished":
            break
        time.sleep(0.5)
    else:
        raise FleetError(f"run {run_id} on {link.url} not finished after {limit:g} s "
                         f"(status {status or 'unknown'})"
                         + (f"; {'; '.join(events)}" if events else ""))
    for log in _rounds(out / "progress.jsonl")[seen:]:
        if on_round is not None:
            on_round(log)
    if sub != "completed" or not (out / "outcome.json").exists():
        after = f" ({'; '.join(events)}: the run did not survive it)" if events else ""
        raise FleetError(f"run {run_id} on {link.url} {sub or 'failed'}{after}: "
                         f"{details[:300] or 'see ' + str(link.log_file)}")
    return _result(out, link, plan, model, base_head, served, run_key, run_id, events, start)


def _result(out: Path, link: SuperLink, plan: DeployPlan, model: bytes, base_head: Head,
            served: bytes, run_key: str, run_id: int | None, events: list[str],
            start: float) -> SimulationResult:
    """The run's result from what its ServerApp wrote to ``out``."""
    outcome = json.loads((out / "outcome.json").read_text())
    with np.load(out / "arrays.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    head = Head.from_arrays(arrays)
    nodes = int(outcome["nodes"])
    sim = SimulationPlan(clients=max(nodes, 2), rounds=plan.rounds, strategy=plan.strategy,
                         epochs=plan.epochs, lr=plan.lr, batch_size=plan.batch_size,
                         compression=plan.compression, fraction=plan.fraction,
                         quorum=plan.quorum, round_timeout=plan.round_timeout,
                         proximal_mu=plan.proximal_mu, min_gain=plan.min_gain,
                         dp_noise=plan.dp_noise, dp_clip=plan.dp_clip, seed=plan.seed)
    gate = GateResult(**outcome["gate"])
    return SimulationResult(
        plan=sim, run_id=f"fl-{run_key}", base_sha256=sha256_bytes(model), base_head=base_head,
        head=head, model=write_head(served, head),
        rounds=[RoundLog(**r) for r in outcome["rounds"]],
        round_accuracy={int(k): float(v) for k, v in outcome["round_accuracy"].items()},
        gate=gate, labelled=gate.samples, drifted=0, poisoned=0,
        seconds=time.perf_counter() - start,
        extra={"runtime": "deployment", "superlink": link.url, "flower_run_id": run_id,
               "privacy": plan.privacy_record(),
               "nodes": nodes, "deploy_plan": plan.to_dict(),
               "superlink_restarts": link.restarts, "superlink_events": events})
