"""The in-process simulation: the same ClientApp and ServerApp as a deployment, one process.

Each simulated device gets a share of the data (:func:`partition`), runs the deployed model on
it as the agent would (ONNX Runtime, the ``edgeloop_embedding`` output), records each prediction
in its own :class:`~edgeloop.monitor.sketch.FeedbackStore`, and the simulator sends the true label
for ``label_share`` of the predictions as delayed feedback: those labelled samples are all a
device trains and evaluates on. Drifted devices (``drift:F``) see shifted inputs
(``data.sensor_shift`` for images); poisoned devices (``poisoned``) send their update
sign-flipped and scaled by ``poison_scale`` (a model-poisoning attack); stragglers answer after
the round's timeout and are left out of that round.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, Context, Message, MessageType, RecordDict

from edgeloop.artifacts import sha256_bytes
from edgeloop.errors import DataError, InputError, MissingExtraError
from edgeloop.federated.device import (
    EMBEDDING_OUTPUT,
    Head,
    HeadTrainer,
    LocalTrainer,
    client_app,
    feedback_features,
    parse_compression,
    split_held_out,
)
from edgeloop.federated.server._grid import InProcessGrid
from edgeloop.federated.server._onnx_head import read_head, with_embedding, write_head
from edgeloop.federated.server._partition import parse_partition, partition
from edgeloop.federated.server._privacy import PrivacyPlan, privacy_spend
from edgeloop.federated.server._serverapp import GateResult, RunOutcome, server_app
from edgeloop.federated.server._strategy import RoundGuard, RoundLog, make_strategy
from edgeloop.monitor.sketch import FeedbackStore
from edgeloop.runtime import Session, run_batched

__all__ = ["TRAINERS", "SimulationPlan", "SimulationResult", "drift_inputs", "simulate"]

TRAINERS = ("head", "full")  # the numpy head trainer; a torch fine-tune of the whole model


@dataclass(frozen=True)
class SimulationPlan:
    """One simulated federated run (see the module for the device model)."""

    clients: int = 10
    rounds: int = 5
    partition: str = "iid"
    strategy: str = "fedavg"
    trainer: str = "head"
    epochs: int = 5
    lr: float = 0.05
    batch_size: int = 32
    compression: str = "none"
    label_share: float = 0.5  # of predictions that get a delayed label
    fraction: float = 1.0  # of clients sampled per round
    quorum: float = 0.5  # of the sampled clients whose valid updates a round needs
    stragglers: float = 0.0  # chance a sampled client answers after the round closed
    poisoned: float = 0.0  # share of clients that attack
    poison_scale: float = 10.0
    round_timeout: float = 600.0
    proximal_mu: float = 0.01  # FedProx only
    min_gain: float = 0.0  # accuracy the candidate must gain over the base to be accepted
    dp_noise: float = 0.0  # central DP (server-side fixed clipping): noise multiplier
    dp_clip: float = 0.0  # and clipping norm; 0 = no DP
    drift_severity: float = 1.0
    seed: int = 0
    backend: str = "inprocess"  # or "ray": Flower's simulation runtime (flwr[simulation])
    secagg: bool = False  # each round's fit under Flower's SecAgg+ (FedAvg, no server DP)

    def __post_init__(self) -> None:
        parse_partition(self.partition)
        parse_compression(self.compression)
        checks = {
            "clients": 2 <= self.clients <= 10_000,
            "rounds": 1 <= self.rounds <= 10_000,
            "label_share": 0 < self.label_share <= 1,
            "fraction": 0 < self.fraction <= 1,
            "quorum": 0 < self.quorum <= 1,
            "stragglers": 0 <= self.stragglers < 1,
            "poisoned": 0 <= self.poisoned < 0.5,
            "poison_scale": 0 < self.poison_scale <= 1e6,
            "round_timeout": 0 < self.round_timeout <= 86_400,
            "dp_noise": 0 <= self.dp_noise <= 100,
            "dp_clip": 0 <= self.dp_clip <= 1e6,
            "drift_severity": 0 <= self.drift_severity <= 3,
            "min_gain": -1 <= self.min_gain <= 1,
        }
        bad = [k for k, ok in checks.items()
               if not ok or not math.isfinite(float(getattr(self, k)))]
        if bad:
            raise InputError(f"simulation: {bad[0]}={getattr(self, bad[0])!r} out of range")
        if self.trainer not in TRAINERS:
            raise InputError(f"trainer {self.trainer!r:.40}: expected one of "
                             f"{', '.join(TRAINERS)}")
        if self.backend not in ("inprocess", "ray"):
            raise InputError(f"backend {self.backend!r:.40}: expected inprocess or ray")
        if self.backend == "ray" and self.stragglers > 0:
            raise InputError("stragglers are simulated in process only (backend inprocess)")
        if (self.dp_noise > 0) != (self.dp_clip > 0):
            raise InputError("differential privacy needs both dp_noise > 0 and dp_clip > 0")
        if self.secagg:
            PrivacyPlan(dp="server" if self.dp_noise > 0 else "none", noise=self.dp_noise,
                        clip=self.dp_clip, secagg=True, strategy=self.strategy).check()
            if self.compression != "none":
                raise InputError(f"SecAgg+ with compression {self.compression!r:.40}: the "
                                 "masked sum needs the dense update; use --compression none")
            if self.poisoned > 0:
                raise InputError("SecAgg+ with poisoned devices: an attack the server cannot "
                                 "see under SecAgg+ is not simulated; use poisoned 0")

    @property
    def sampled(self) -> int:
        return max(2, int(self.clients * self.fraction))

    @property
    def quorum_count(self) -> int:
        return max(1, math.ceil(self.quorum * self.sampled))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SimulationResult:
    plan: SimulationPlan
    run_id: str
    base_sha256: str
    base_head: Head
    head: Head
    model: bytes  # the candidate: the base model with the trained head
    rounds: list[RoundLog]
    round_accuracy: dict[int, float]
    gate: GateResult
    labelled: int  # delayed labels the devices held
    drifted: int
    poisoned: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def privacy(self) -> dict[str, Any]:
        if isinstance(self.extra.get("privacy"), dict):  # a deployed run says its own
            return dict(self.extra["privacy"])
        if self.plan.dp_noise > 0:
            out: dict[str, Any] = {"mechanism": "central DP, server-side fixed clipping",
                                   "noise_multiplier": self.plan.dp_noise,
                                   "clipping_norm": self.plan.dp_clip}
            return out | privacy_spend(self.plan.dp_noise, self.plan.dp_clip,
                                       self.plan.strategy, self.plan.rounds)
        if self.plan.secagg:
            return {"mechanism": "SecAgg+ (Flower's SecAggPlusWorkflow): the server saw only "
                                 "the masked updates and their weighted mean"}
        return {"mechanism": "none"}

    def participants(self) -> dict[str, int]:
        """Counts, never node ids."""
        return {"clients": self.plan.clients,
                "sampled": sum(r.sampled for r in self.rounds),
                "answered": sum(r.answered for r in self.rounds),
                "aggregated_updates": sum(r.answered - r.failed - r.rejected
                                          for r in self.rounds if r.aggregated),
                "rounds_aggregated": sum(r.aggregated for r in self.rounds),
                "drifted": self.drifted, "poisoned": self.poisoned}

    def record(self) -> dict[str, Any]:
        """The run as JSON data (what the registry's lineage points at)."""
        return {"run_id": self.run_id, "base_sha256": self.base_sha256,
                "candidate_sha256": sha256_bytes(self.model), "plan": self.plan.to_dict(),
                "participants": self.participants(), "privacy": self.privacy,
                "rounds": [r.to_dict() for r in self.rounds],
                "round_accuracy": {str(k): v for k, v in self.round_accuracy.items()},
                "gate": self.gate.to_dict(), "labelled_samples": self.labelled,
                "seconds": self.seconds, **self.extra}

    def record_json(self) -> bytes:
        return json.dumps(self.record(), sort_keys=True, indent=2).encode()


def drift_inputs(x: npt.ArrayLike, severity: float, seed: int) -> npt.NDArray[Any]:
    """Inputs as a drifted device records them (``drift:F`` partitions): images through
    ``data.sensor_shift`` (another camera), other inputs with a sensor's gain (1 +- 0.3 x
    ``severity`` per feature, fixed by ``seed``) and an offset of 0.5 x ``severity``. The
    simulation shifts device ``c``'s inputs with ``seed = plan.seed + c`` (0-based ``c``)."""
    x = np.asarray(x)
    if x.ndim == 4:
        from edgeloop.data import sensor_shift

        return sensor_shift(x, severity, seed)
    rng = np.random.default_rng([seed, 0xD1F7])  # a sensor's gain and offset per feature
    gain = 1 + 0.3 * severity * rng.choice([-1.0, 1.0], x.shape[1:])
    return (x * gain + 0.5 * severity).astype(x.dtype)


def _poison(reply: Message, scale: float) -> None:
    """Sign-flip and scale an encoded update in place (every encoding)."""
    parts = {k: v.numpy() for k, v in reply.content.array_records["arrays"].items()}
    out = {}
    for k, v in parts.items():
        if k.endswith("::q"):
            out[k] = (-v.astype(np.int16)).clip(-127, 127).astype(np.int8)
        elif k.endswith("::scale"):
            out[k] = (v * scale).astype(np.float32)
        elif k.endswith("::idx"):
            out[k] = v
        else:
            out[k] = (-scale * v).astype(np.float32)
    reply.content["arrays"] = ArrayRecord({k: Array(v) for k, v in out.items()})


def _run_on_ray(server: Any, app: Any, plan: SimulationPlan) -> None:
    """The same ServerApp and ClientApp on Flower's Ray simulation runtime (one CPU a node)."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("backend 'ray' needs Flower's simulation extra: "
                                "pip install 'flwr[simulation]>=1.42,<1.43'") from e
    from flwr.simulation import run_simulation

    run_simulation(server_app=server, client_app=app, num_supernodes=plan.clients,
                   backend_name="ray",
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})


def simulate(model: bytes, x: npt.ArrayLike, y: npt.ArrayLike, plan: SimulationPlan, *,
             on_round: Callable[[RoundLog], None] | None = None,
             torch_model: Any = None, seen: list[Message] | None = None) -> SimulationResult:
    """Run ``plan`` on samples ``x``/``y`` (spread over the clients) with ``model`` (ONNX bytes)
    deployed on every client; the candidate is the base with the federated head, or, for
    ``trainer="full"``, ``torch_model`` (the module ``model`` was exported from, e.g.
    ``zoo.load_checkpoint``) fine-tuned whole and exported. With ``plan.secagg``, ``seen``
    collects every reply the server received in the rounds (what SecAgg+ lets it see)."""
    import random

    start = time.perf_counter()
    xa, ya = np.asarray(x), np.asarray(y).astype(np.int64)
    if len(xa) != len(ya) or len(ya) < plan.clients:
        raise DataError(f"simulation data: {len(xa)} inputs, {len(ya)} labels for "
                        f"{plan.clients} clients")
    if plan.trainer == "full" and torch_model is None:
        raise InputError("trainer 'full' needs the torch module the model was exported from "
                         "(a zoo checkpoint)")
    base_sha = sha256_bytes(model)
    served = with_embedding(model)
    base_head = read_head(served)
    session = Session(served, providers=["CPUExecutionProvider"])
    parts, drifted = partition(ya, plan.clients, plan.partition, plan.seed)
    rng = np.random.default_rng([plan.seed, 0x51])
    n_poison = round(plan.poisoned * plan.clients)
    poisoned = {int(i) + 1 for i in rng.choice(plan.clients, int(n_poison), replace=False)}
    trainers: dict[int, dict[str, LocalTrainer]] = {}
    labelled = 0
    for c, idx in enumerate(parts):
        xc = xa[idx]
        if c in drifted:
            xc = drift_inputs(xc, plan.drift_severity, plan.seed + c)
        out = run_batched(session, xc)
        feats = np.asarray(out[EMBEDDING_OUTPUT], np.float32).reshape(len(xc), -1)
        probs = next(v for k, v in out.items() if k != EMBEDDING_OUTPUT)
        # the head trainer keeps embeddings (an embedding-watched model), the full one inputs
        kept = feats if plan.trainer == "head" else np.asarray(xc, np.float32)
        store = FeedbackStore(base_head.n_classes, capacity=len(xc) + 1,
                              max_input_bytes=kept.nbytes + 1, keep_labelled=len(xc))
        for i in range(len(xc)):  # the agent records each prediction with what it keeps
            store.record(f"c{c}-{i}", int(np.argmax(probs[i])), None, kept[i])
        for j in np.flatnonzero(rng.random(len(xc)) < plan.label_share).tolist():
            store.feedback(f"c{c}-{j}", int(ya[idx][j]))  # the delayed label
        if plan.trainer == "head":
            fx, fy = feedback_features(store)
            trainers[c + 1] = {"head": HeadTrainer(*split_held_out(fx, fy))}
        else:
            from edgeloop.federated.server._torch_trainer import TorchTrainer

            fx, fy = store.labelled_samples()
            trainers[c + 1] = {"full": TorchTrainer(torch_model, *split_held_out(fx, fy))}
        labelled += len(fy)

    def device(ctx: Context) -> int:  # 1-based: Flower's simulation gives node ids at random
        return int(ctx.node_config.get("partition-id", ctx.node_id - 1)) + 1

    def attacker(msg: Message, ctx: Context, call_next: Callable[[Message, Context], Message],
                 ) -> Message:
        reply = call_next(msg, ctx)
        if device(ctx) in poisoned and msg.metadata.message_type == MessageType.TRAIN \
                and not reply.has_error():
            _poison(reply, plan.poison_scale)
        return reply

    app = client_app(lambda ctx: trainers[device(ctx)], mods=[attacker] if poisoned else None)

    latency_rng = np.random.default_rng([plan.seed, 0x1A7])

    def latency(node_id: int, msg: Message) -> float:
        if msg.metadata.message_type != MessageType.TRAIN or plan.stragglers == 0:
            return 0.0
        late = latency_rng.random() < plan.stragglers
        return 2 * plan.round_timeout if late else 0.0

    grid = InProcessGrid(app, plan.clients, latency=latency)
    inner = make_strategy(plan.strategy, fraction=plan.fraction, min_nodes=2,
                          proximal_mu=plan.proximal_mu, malicious=n_poison)
    if plan.dp_noise > 0:
        from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

        inner = DifferentialPrivacyServerSideFixedClipping(
            inner, noise_multiplier=plan.dp_noise, clipping_norm=plan.dp_clip,
            num_sampled_clients=plan.sampled)
    guard = RoundGuard(inner, quorum=plan.quorum_count)
    outcome = RunOutcome()
    train_config = {"trainer": plan.trainer, "epochs": plan.epochs, "lr": plan.lr,
                    "batch-size": plan.batch_size, "compression": plan.compression,
                    "seed": plan.seed}
    initial = {k: np.asarray(v) for k, v in base_head.to_arrays().items()}
    if plan.trainer == "full":
        from edgeloop.federated.server._torch_trainer import state_arrays

        initial = dict(state_arrays(torch_model))
    state = random.getstate()  # Flower samples nodes with the random module: seed it
    random.seed(plan.seed)
    np_state = np.random.get_state()
    np.random.seed(plan.seed)  # Flower's DP noise uses numpy's global generator
    try:
        secagg = None
        if plan.secagg:
            from edgeloop.federated.server._secagg import SecAggSettings

            secagg = SecAggSettings()
        server = server_app(guard, initial, outcome, rounds=plan.rounds,
                            train_config=train_config, timeout=plan.round_timeout,
                            min_gain=plan.min_gain, on_round=on_round, secagg=secagg,
                            fraction=plan.fraction, seen=seen)
        if plan.backend == "ray":
            _run_on_ray(server, app, plan)
        else:
            server(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                 run_config={}))
    finally:
        random.setstate(state)
        np.random.set_state(np_state)
    assert outcome.gate is not None
    if plan.trainer == "full":
        from edgeloop.federated.server._torch_trainer import export_candidate

        candidate = export_candidate(torch_model, outcome.arrays, xa[:2],
                                     session.inputs[0].name,
                                     next(o.name for o in session.outputs
                                          if o.name != EMBEDDING_OUTPUT))
        head = read_head(candidate)
    else:
        head = Head.from_arrays(outcome.arrays)
        candidate = write_head(served, head)
    return SimulationResult(
        plan=plan, run_id=f"fl-{secrets.token_hex(6)}", base_sha256=base_sha,
        base_head=base_head, head=head, model=candidate,
        rounds=outcome.rounds, round_accuracy=outcome.round_accuracy, gate=outcome.gate,
        labelled=labelled, drifted=len(drifted), poisoned=len(poisoned),
        seconds=time.perf_counter() - start,
    )
