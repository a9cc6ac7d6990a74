"""The heal pipeline: a claimed ``finetune`` job in, a gated fine-tune rolled out to its cohort.

:func:`heal` runs one job an alert queued (``MonitorClient.claim_job``): a federated head
fine-tune over the cohort's devices (the same Flower ClientApp and ServerApp as a deployment,
on the labelled samples the devices' feedback stores hold), the federated evaluation gate, the
new registry version with its lineage (the base, the run, the re-baselined monitoring
reference, and the alert event and job that asked for it), the re-fit under the base's budget
(the base's own recipe, never bigger than the base), a signed bundle carrying the new
reference, a release with deltas from the versions in the field, and a staged rollout to the
cohort gated on accuracy (estimated and realized) and errors, never on drift against the old
reference (the fix cannot remove the input shift). The job is finished with what happened,
succeeded or failed. With ``HealPlan.federation == "deployment"`` the fine-tune runs on the
cohort's agents' SuperNodes instead (``loop._federation``: a SuperLink, the cohort's node keys,
the run announced to the agents, resumed from its checkpoint by a later attempt of the job).

Orchestration layer: it drives the fleet server through :mod:`edgeloop.client` and runs
federated, optimize, bundle and update work on the build side.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgeloop.artifacts import LineageRef, ModelCard, sha256_bytes
from edgeloop.errors import FleetError, InputError
from edgeloop.loop._federation import FEDERATIONS, SuperLinkAccess, federate_on_agents

if TYPE_CHECKING:
    import ssl

    from edgeloop.client import MonitorClient
    from edgeloop.monitor.sketch import MonitorReference, Projection

__all__ = [
    "DEFAULT_GATES",
    "EST_MARGIN",
    "CohortData",
    "DatasetCohort",
    "FleetAccess",
    "HealPlan",
    "HealProgress",
    "HealResult",
    "heal",
    "heal_next",
    "shift_inputs",
]

# Errors, and accuracy (estimated from the sketches, realized from delayed labels) against a
# floor: the candidate's federated accuracy less EST_MARGIN. Not against the control group: its
# estimate is judged against the old reference, which overestimates under drift, and the last
# stage has none. No drift gate: the inputs stay shifted after the fix.
DEFAULT_GATES: tuple[str, ...] = ("error_rate<0.05",)
EST_MARGIN = 0.1


class CohortData(Protocol):
    """The cohort's devices, each with what its feedback store holds: the samples of the
    predictions that got a delayed label, and those labels. ``samples``: what those are,
    ``"input"`` (the model's inputs) or ``"embedding"`` (its penultimate activations: what
    an agent keeps when the reference it runs watches the model's embedding)."""

    @property
    def samples(self) -> str: ...

    def devices(self, cohort: str) -> Sequence[tuple[np.ndarray, np.ndarray]]: ...


class HealProgress(Protocol):
    """Where a durable run keeps its steps: ``done()`` the steps recorded so far (``register``,
    ``release``, ``rollout``) with their outputs, ``record(step, output)`` one more. A heal
    given one skips the steps already done (a resumed run registers no second version and starts
    no second rollout); ``record`` raises when the run is no longer this worker's."""

    def done(self) -> Mapping[str, Mapping[str, Any]]: ...

    def record(self, step: str, output: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class DatasetCohort:
    """A simulated cohort: ``devices`` devices sharing a labelled data set, their inputs shifted
    as the cohort's drifted sensors would record them (``severity``; images through
    :func:`edgeloop.data.sensor_shift`, other float inputs by a gain and offset per feature),
    a ``label_share`` of each device's predictions labelled through delayed feedback."""

    x: np.ndarray
    y: np.ndarray
    devices_n: int = 10
    severity: float = 0.0
    label_share: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.devices_n <= 10_000:
            raise InputError(f"cohort devices {self.devices_n}: expected 2..10000")
        if not 0 < self.label_share <= 1 or not 0 <= self.severity <= 3:
            raise InputError(f"label share {self.label_share} in (0, 1] and severity "
                             f"{self.severity} in [0, 3] expected")
        if len(self.x) != len(self.y) or len(self.y) < 4 * self.devices_n:
            raise InputError(f"cohort data: {len(self.x)} inputs, {len(self.y)} labels for "
                             f"{self.devices_n} devices (at least 4 labelled samples each)")

    @property
    def samples(self) -> str:
        return "input"

    def devices(self, cohort: str) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, 0xC0])
        x = shift_inputs(np.asarray(self.x), self.severity, self.seed)
        y = np.asarray(self.y).astype(np.int64)
        out = []
        for idx in np.array_split(rng.permutation(len(y)), self.devices_n):
            keep = idx[rng.random(len(idx)) < self.label_share]
            out.append((x[keep], y[keep]))
        return out


def shift_inputs(x: np.ndarray, severity: float, seed: int) -> np.ndarray:
    """The cohort's covariate shift (none at ``severity`` 0)."""
    if severity == 0:
        return x
    if x.ndim == 4:
        from edgeloop.data import sensor_shift

        return sensor_shift(x, severity, seed)
    rng = np.random.default_rng([seed, 0xD1F7])
    gain = 1 + 0.3 * severity * rng.choice([-1.0, 1.0], x.shape[1:])
    return (x * gain + 0.5 * severity).astype(x.dtype)


@dataclass(frozen=True)
class FleetAccess:
    """The fleet server (admin API) and the build side's registry, keys and TUF repository."""

    url: str
    admin_token: str
    db_url: str
    data: Path  # the registry's data directory
    keys: Path  # release.pem (signing), fleet.pem/fleet.pub.pem (encryption), root.json
    repo: Path  # the TUF repository the server serves (deltas are written into it)
    verify: ssl.SSLContext | bool = True
    passphrase: bytes | None = None
    # where a heal's deployed federated run starts its SuperLink (policy federation:
    # deployment); None: this access runs in-process fine-tunes only
    superlink: SuperLinkAccess | None = None

    def probe(self, timeout_s: float = 5.0) -> str | None:
        """Whether the server answers ``/healthz`` over this access's TLS trust: None when it
        does, else one line saying why not (a server not listening yet, a timeout). A server
        whose certificate this trust does not verify raises :class:`FleetError` (waiting would
        not help: give its CA)."""
        import httpx

        try:
            r = httpx.get(self.url.rstrip("/") + "/healthz", verify=self.verify,
                          timeout=timeout_s, follow_redirects=False)
        except httpx.ConnectError as e:
            if "CERTIFICATE_VERIFY_FAILED" in str(e) or "certificate verify failed" in str(e):
                raise FleetError(f"server {self.url}: its TLS certificate does not verify "
                                 f"against the trusted CA(s) ({str(e)[:200]}); give the CA "
                                 "that signed it (--ca)") from None
            return f"server {self.url}: {type(e).__name__}: {str(e)[:200]}"
        except httpx.HTTPError as e:
            return f"server {self.url}: {type(e).__name__}: {str(e)[:200]}"
        return None if r.status_code == 200 else f"server {self.url}: /healthz answered " \
            f"HTTP {r.status_code}"

    def monitor(self) -> MonitorClient:
        from edgeloop.client import MonitorClient

        return MonitorClient(self.url, self.admin_token, timeout_s=120.0, verify=self.verify)


@dataclass(frozen=True)
class HealPlan:
    """How a job is healed: the federated run, the re-fit, the rollout and its gates."""

    rounds: int = 5
    epochs: int = 5
    lr: float = 0.05
    strategy: str = "fedavg"
    compression: str = "none"
    min_gain: float = 0.0
    refit: str | None = "base"  # the base's recipe; None: ship the fine-tuned model as it is
    dataset: str | None = None  # calibration and evaluation data of the re-fit
    max_drop: float = 0.01
    stages: tuple[float, ...] = (25, 50, 100)
    soak_s: float = 10.0
    gates: tuple[str, ...] = DEFAULT_GATES
    min_devices: int = 2
    min_requests: int = 30
    wait_s: float = 900.0  # for the rollout to end; 0: start it and return
    seed: int = 0
    # the auto-heal policy that started the heal (its file name and sha256), for the lineage
    policy: str | None = None
    policy_sha256: str | None = None
    # where the fine-tune runs: "in-process" (over the cohort's feedback as CohortData gives
    # it) or "deployment" (a Flower run on the cohort's agents' SuperNodes, FleetAccess.superlink)
    federation: str = "in-process"
    fl_min_nodes: int = 2  # deployment: connected SuperNodes a round waits for
    fl_round_timeout: float = 120.0  # deployment: seconds a round waits for replies

    def __post_init__(self) -> None:
        checks = {"rounds": 1 <= self.rounds <= 1000, "epochs": 1 <= self.epochs <= 1000,
                  "lr": 0 < self.lr <= 10, "min_gain": -1 <= self.min_gain <= 1,
                  "max_drop": 0 <= self.max_drop <= 1, "soak_s": 0 <= self.soak_s <= 86_400,
                  "wait_s": 0 <= self.wait_s <= 86_400, "min_devices": self.min_devices >= 1,
                  "min_requests": self.min_requests >= 0,
                  "fl_min_nodes": 2 <= self.fl_min_nodes <= 100_000,
                  "fl_round_timeout": 1 <= self.fl_round_timeout <= 86_400}
        bad = [k for k, ok in checks.items()
               if not ok or not math.isfinite(float(getattr(self, k)))]
        if bad:
            raise InputError(f"heal plan: {bad[0]}={getattr(self, bad[0])!r} out of range")
        if self.federation not in FEDERATIONS:
            raise InputError(f"heal plan: federation {self.federation!r:.40}: expected one of "
                             f"{', '.join(FEDERATIONS)}")
        if not self.stages or any(not 0 < s <= 100 for s in self.stages):
            raise InputError(f"heal plan: stages {self.stages!r}: expected percents in (0, 100]")
        sha = self.policy_sha256
        if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise InputError(f"heal plan: policy_sha256 {sha[:70]!r}: expected 64 hex digits")
        if any(g.split("<")[0].split(">")[0].strip().startswith("drift") for g in self.gates):
            raise InputError("heal plan: a drift gate judges the fix against the old reference, "
                             "which the fix cannot satisfy; gate on accuracy and errors")


@dataclass
class HealResult:
    """What one job's heal did; ``to_dict()`` is the job's result."""

    job_id: int
    model: str
    base_version: int
    cohort: str
    event_id: int | None
    ok: bool
    reason: str
    version: int | None = None
    gate: dict[str, Any] | None = None
    run_id: str | None = None
    refit: dict[str, Any] = field(default_factory=dict)
    bundle_bytes: int | None = None
    deltas: dict[str, int] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def heal_next(fleet: FleetAccess, cohort_data: Callable[[Mapping[str, Any]], CohortData],
              plan: HealPlan | None = None, *, worker: str = "heal",
              on_step: Callable[[str, str], None] | None = None) -> HealResult | None:
    """Claim the oldest queued ``finetune`` job and heal it; None when none is queued."""
    job = fleet.monitor().claim_job("finetune", worker=worker)
    if job is None:
        return None
    return heal(job, fleet, cohort_data(job), plan, worker=worker, on_step=on_step)


def heal(job: Mapping[str, Any], fleet: FleetAccess, cohort: CohortData,
         plan: HealPlan | None = None, *, worker: str = "heal",
         on_step: Callable[[str, str], None] | None = None,
         progress: HealProgress | None = None,
         finish: Callable[[HealResult], None] | None = None) -> HealResult:
    """Heal one claimed ``finetune`` job (see the module); the job is finished either way
    (through the API, or by ``finish``). With ``progress`` the steps already done are skipped
    and each step done is recorded (:class:`HealProgress`).

    An error on the way fails the job with its message and is raised again."""
    plan = plan or HealPlan()
    res = HealResult(job_id=int(job["id"]), model=str(job["model"]),
                     base_version=int(job["version"]), cohort=str(job.get("cohort") or "*"),
                     event_id=job.get("event_id"), ok=False, reason="")

    def done(r: HealResult) -> None:
        if finish is not None:
            finish(r)
        else:
            fleet.monitor().finish_job(r.job_id, r.to_dict(), ok=r.ok, worker=worker)

    try:
        _run(job, fleet, cohort, plan, res, on_step or (lambda step, text: None), progress)
    except Exception as e:
        res.ok, res.reason = False, f"{type(e).__name__}: {e}"
        done(res)
        raise
    done(res)
    return res


def _timed(res: HealResult, name: str, t0: float) -> None:
    res.seconds[name] = round(time.perf_counter() - t0, 2)


class _NoProgress:
    def done(self) -> Mapping[str, Mapping[str, Any]]:
        return {}

    def record(self, step: str, output: Mapping[str, Any]) -> None:
        pass


_REGISTER_FIELDS = ("version", "bundle_bytes", "run_id", "gate", "refit")


def _healed_version(fleet: FleetAccess, res: HealResult) -> int | None:
    """The version an earlier attempt of this job registered (its card names the job), if any:
    a worker that died between the registration and recording it registers no second one."""
    from edgeloop.registry import Registry

    with Registry(fleet.db_url, fleet.data) as reg:
        for v in reg.list_versions(res.model):
            extra = (v.card.extra or {}) if v.card is not None else {}
            heal_info = extra.get("heal") if isinstance(extra, Mapping) else None
            if isinstance(heal_info, Mapping) and heal_info.get("job_id") == res.job_id:
                return v.version
    return None


def _run(job: Mapping[str, Any], fleet: FleetAccess, cohort: CohortData, plan: HealPlan,
         res: HealResult, say: Callable[[str, str], None],
         progress: HealProgress | None = None) -> None:
    prog = progress or _NoProgress()
    steps = dict(prog.done())
    if "register" not in steps and progress is not None:
        earlier = _healed_version(fleet, res)
        if earlier is not None:
            steps["register"] = {"version": earlier, "adopted": True}
            prog.record("register", steps["register"])
    if "register" in steps:
        reg_out = steps["register"]
        for k in _REGISTER_FIELDS:
            if k in reg_out:
                setattr(res, k, reg_out[k])
        version = int(reg_out["version"])
        say("register", f"{res.model}@{version} registered by an earlier attempt of job "
            f"{res.job_id}: resumed")
    else:
        built = _build(job, fleet, cohort, plan, res, say)
        if built is None:
            return
        version = built
        prog.record("register", {k: getattr(res, k) for k in _REGISTER_FIELDS})
    if "release" in steps:
        res.deltas = dict(steps["release"].get("deltas", {}))
    else:
        t0 = time.perf_counter()
        _release(fleet, res, version)
        _timed(res, "release", t0)
        prog.record("release", {"deltas": res.deltas})
        smallest = min(res.deltas.values(), default=None)
        full = f" (full bundle {res.bundle_bytes:,} bytes)" if res.bundle_bytes else ""
        say("release", f"{res.model}@{version} published; "
            + (f"deltas {res.deltas}{full}"
               if smallest is not None else "no delta (no other version in the field)"))
    t0 = time.perf_counter()
    started = steps.get("rollout", {}).get("id")
    res.rollout = _roll_out(fleet, res, version, plan,
                            started=int(started) if started is not None else None,
                            record=None if progress is None else
                            (lambda rid: prog.record("rollout", {"id": rid})))
    _timed(res, "rollout", t0)
    state = res.rollout.get("state")
    say("rollout", f"rollout {res.rollout.get('id')} of {res.model}@{version} to "
        f"{res.cohort}: {state}")
    if plan.wait_s == 0:
        res.ok, res.reason = True, f"rollout {res.rollout.get('id')} started"
    elif state == "completed":
        res.ok, res.reason = True, f"{res.model}@{version} rolled out to {res.cohort}"
    else:
        res.reason = (f"rollout {res.rollout.get('id')} of {res.model}@{version} ended "
                      f"{state!r}: {res.rollout.get('reason', '')}")


def _build(job: Mapping[str, Any], fleet: FleetAccess, cohort: CohortData, plan: HealPlan,
           res: HealResult, say: Callable[[str, str], None]) -> int | None:
    """Fine-tune, gate, re-fit and register; the new version (None: the gate refused)."""
    from edgeloop.registry import Registry

    with Registry(fleet.db_url, fleet.data) as reg:
        base_v = reg.resolve(f"{res.model}@{res.base_version}")
        base = reg.read_blob(base_v.artifact.sha256)
        base_card = base_v.card
        base_ref = _base_reference(reg, base_v)
    kept = base_ref.projection if base_ref is not None else None
    embedded = cohort.samples == "embedding"
    if embedded and kept is None:
        raise InputError(f"cohort {res.cohort!r} holds embeddings, but the monitoring reference "
                         f"of {res.model}@{res.base_version} watches no embedding")
    held = [(x, y) for x, y in cohort.devices(res.cohort) if len(y) >= 2]
    devices = held if embedded else _as_inputs(base, held)
    if len(devices) < 2:
        raise InputError(f"cohort {res.cohort!r}: {len(devices)} devices hold labelled "
                         "feedback; a federated fine-tune needs at least 2")
    t0 = time.perf_counter()
    if plan.federation == "deployment":
        run = _federate_deployed(fleet, base, plan, res, say)
    else:
        run = _federate(base, devices, plan, embedded=embedded)
    _timed(res, "federated", t0)
    res.run_id, res.gate = run.run_id, run.gate.to_dict()
    say("finetune", f"{run.run_id}: {run.gate.reason}")
    if not run.gate.accepted:
        res.reason = f"the federated evaluation gate refused the candidate: {run.gate.reason}"
        return None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeloop-heal-") as tmp:
        work = Path(tmp)
        model, card, reference = _register_inputs(run, devices, base_card, res, job, plan,
                                                  base_ref if embedded else None, kept)
        shipped, card = _refit(model, card, base, base_card, plan, work, res)
        _timed(res, "refit", t0)
        say("refit", _refit_text(res.refit))
        t0 = time.perf_counter()
        version, bundle = _register(fleet, reg_args=(shipped, card, reference), res=res,
                                    work=work, run_record=run.record_json())
        res.version = version
        _timed(res, "register", t0)
        say("register", f"{res.model}@{version}: lineage names alert event {res.event_id} and "
            f"job {res.job_id}; {len(bundle):,}-byte bundle with a re-baselined reference")
    return version


def _federate_deployed(fleet: FleetAccess, base: bytes, plan: HealPlan, res: HealResult,
                       say: Callable[[str, str], None]) -> Any:
    """The fine-tune as a Flower deployment on the SuperNodes of the cohort's agents (their
    own delayed labels; ``loop._federation``), resumed from its checkpoint by a later attempt
    of the same job."""
    from edgeloop.federated.server import DeployPlan

    if fleet.superlink is None:
        raise FleetError("policy federation 'deployment' needs the fleet's SuperLink settings "
                         "(autoheal worker --superlink-cert, --superlink-key, --superlink-ca)")
    deploy_plan = DeployPlan(rounds=plan.rounds, strategy=plan.strategy, epochs=plan.epochs,
                             lr=plan.lr, compression=plan.compression,
                             min_nodes=plan.fl_min_nodes, round_timeout=plan.fl_round_timeout,
                             min_gain=plan.min_gain, seed=plan.seed)
    return federate_on_agents(fleet.superlink, fleet.db_url, base, deploy_plan, res.cohort,
                              key=f"job-{res.job_id}", say=lambda text: say("federate", text))


def _as_inputs(base: bytes, devices: Sequence[tuple[np.ndarray, np.ndarray]]
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each device's samples in the model's input shape (a feedback store keeps them flat)."""
    from edgeloop.runtime import Session

    dims = Session(base, providers=["CPUExecutionProvider"]).inputs[0].shape[1:]
    if not all(isinstance(d, int) for d in dims):
        return list(devices)
    shape = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    return [(np.asarray(x, np.float32).reshape((len(x), *shape)) if x.shape[1:] != shape
             else x, np.asarray(y).astype(np.int64)) for x, y in devices]


def _federate(base: bytes, devices: Sequence[tuple[np.ndarray, np.ndarray]],
              plan: HealPlan, *, embedded: bool = False) -> Any:
    """The federated head fine-tune and its evaluation gate over ``devices`` (their samples
    are the model's inputs, or with ``embedded`` its embeddings)."""
    import logging
    import random

    from flwr.app import Context, RecordDict

    from edgeloop.federated.device import (
        EMBEDDING_OUTPUT,
        Head,
        HeadTrainer,
        client_app,
        feedback_features,
        split_held_out,
    )
    from edgeloop.federated.server import (
        InProcessGrid,
        RoundGuard,
        RunOutcome,
        SimulationPlan,
        SimulationResult,
        make_strategy,
        read_head,
        server_app,
        with_embedding,
        write_head,
    )
    from edgeloop.monitor.sketch import FeedbackStore
    from edgeloop.runtime import Session, run_batched

    logging.getLogger("flwr").setLevel(logging.WARNING)
    start = time.perf_counter()
    served = with_embedding(base)
    base_head = read_head(served)
    session = Session(served, providers=["CPUExecutionProvider"])
    trainers = {}
    labelled = 0
    for n, (x, y) in enumerate(devices, start=1):
        if embedded:  # what the devices keep: the base's embedding of each input
            feats = np.asarray(x, np.float32).reshape(len(x), -1)
            probs = base_head.logits(feats)  # the class the base predicted: the same argmax
        else:
            out = run_batched(session, x)
            feats = np.asarray(out[EMBEDDING_OUTPUT], np.float32).reshape(len(x), -1)
            probs = next(v for k, v in out.items() if k != EMBEDDING_OUTPUT)
        store = FeedbackStore(base_head.n_classes, capacity=len(x) + 1,
                              max_input_bytes=feats.nbytes + 1, keep_labelled=len(x))
        for i in range(len(x)):  # as the agent records each prediction, then its late label
            store.record(f"d{n}-{i}", int(np.argmax(probs[i])), None, feats[i])
            store.feedback(f"d{n}-{i}", int(y[i]))
        fx, fy = feedback_features(store)
        trainers[n] = {"head": HeadTrainer(*split_held_out(fx, fy))}
        labelled += len(fy)
    sim = SimulationPlan(clients=len(devices), rounds=plan.rounds, strategy=plan.strategy,
                         epochs=plan.epochs, lr=plan.lr, compression=plan.compression,
                         min_gain=plan.min_gain, seed=plan.seed, label_share=1.0)
    app = client_app(lambda ctx: trainers[ctx.node_id])
    grid = InProcessGrid(app, len(devices))
    guard = RoundGuard(make_strategy(plan.strategy, fraction=1.0, min_nodes=2),
                       quorum=sim.quorum_count)
    outcome = RunOutcome()
    initial = {k: np.asarray(v) for k, v in base_head.to_arrays().items()}
    train_config = {"trainer": "head", "epochs": plan.epochs, "lr": plan.lr,
                    "batch-size": 32, "compression": plan.compression, "seed": plan.seed}
    state = random.getstate()
    random.seed(plan.seed)
    try:
        server = server_app(guard, initial, outcome, rounds=plan.rounds,
                            train_config=train_config, timeout=600.0, min_gain=plan.min_gain)
        server(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                             run_config={}))
    finally:
        random.setstate(state)
    if outcome.gate is None:
        raise FleetError("the federated run ended without an evaluation")
    head = Head.from_arrays(outcome.arrays)
    import secrets

    return SimulationResult(
        plan=sim, run_id=f"fl-{secrets.token_hex(6)}", base_sha256=sha256_bytes(base),
        base_head=base_head, head=head, model=write_head(served, head), rounds=outcome.rounds,
        round_accuracy=outcome.round_accuracy, gate=outcome.gate, labelled=labelled,
        drifted=0, poisoned=0, seconds=time.perf_counter() - start,
        extra={"heal": True})


def _base_reference(reg: Any, base_v: Any) -> MonitorReference | None:
    """The base's monitoring reference (from its first bundle's signed manifest) when it
    watches the model's embedding. A head-only fine-tune leaves the embedding as it was, so the
    re-baselined reference keeps its projection: the fix watches the same components as the
    base (drift per feature stays comparable across versions) and its bundle, and the delta to
    it, carry no new projection (8 x 64 floats, 12 kB of the digits CNN's manifest)."""
    from edgeloop.bundle import parse_container, parse_manifest
    from edgeloop.errors import EdgeloopError
    from edgeloop.federated.device import EMBEDDING_OUTPUT
    from edgeloop.monitor.sketch import MonitorReference

    for b in base_v.bundles:
        try:
            monitor = parse_manifest(parse_container(reg.read_blob(b.sha256)).manifest).monitor
            ref = MonitorReference.from_dict(monitor) if monitor else None
        except EdgeloopError:
            continue  # a variant the registry cannot read back: the re-baseline fits its own
        proj = ref.projection if ref is not None else None
        if proj is not None and proj.source == "embedding" and proj.output == EMBEDDING_OUTPUT:
            return ref
    return None


def _register_inputs(run: Any, devices: Sequence[tuple[np.ndarray, np.ndarray]],
                     base_card: ModelCard | None, res: HealResult,
                     job: Mapping[str, Any], plan: HealPlan | None = None,
                     embedded: MonitorReference | None = None,
                     kept: Projection | None = None) -> tuple[bytes, ModelCard, Any]:
    """The candidate, its card (lineage: base, run, reference, the alert event and the job,
    and the auto-heal policy that started it, by name and the policy file's sha256) and its
    monitoring reference, re-baselined from the data it was tuned on (``kept``: the base's
    embedding projection, when it has one; ``embedded``: the base's reference, when the
    devices' samples are embeddings, which the new head classifies)."""
    import dataclasses

    from edgeloop.bundle import model_reference
    from edgeloop.federated.device import EMBEDDING_OUTPUT
    from edgeloop.federated.server import candidate_card

    x = np.concatenate([d[0] for d in devices])
    y = np.concatenate([d[1] for d in devices])
    classes = tuple(base_card.labels) if base_card is not None and base_card.labels else None
    if embedded is None:
        reference = model_reference(run.model, x, y, classes=classes,
                                    embedding_output=EMBEDDING_OUTPUT, projection=kept)
    else:
        from edgeloop.monitor.sketch import build_reference

        emb = np.asarray(x, np.float64).reshape(len(x), -1)
        out = np.asarray(run.head.logits(emb), np.float64)
        if embedded.output_kind == "probabilities":  # what the model's class output holds
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        reference = build_reference(emb, out, y,
                                    classes=classes, output_kind=embedded.output_kind,
                                    embeddings=emb, embedding_output=EMBEDDING_OUTPUT,
                                    projection=kept)
    ref_bytes = reference.to_json()
    card = candidate_card(run, name=res.model, base_card=base_card,
                          base_ref=f"{res.model}@{res.base_version}",
                          record_sha256=sha256_bytes(run.record_json()),
                          reference_sha256=sha256_bytes(ref_bytes))
    alert = json.dumps({"event_id": res.event_id, "job_id": res.job_id, "cohort": res.cohort,
                        "model": res.model, "version": res.base_version,
                        "reason": job.get("reason")}, sort_keys=True).encode()
    lineage = (*card.lineage,
               LineageRef("monitor_alert", sha256_bytes(alert),
                          name=f"alert event {res.event_id} (job {res.job_id}, cohort "
                               f"{res.cohort})" if res.event_id is not None else
                          f"no alert: job {res.job_id} queued by hand by "
                          f"{job.get('created_by') or '?'} (cohort {res.cohort})"),
               LineageRef("reference_data", sha256_bytes(x.tobytes() + y.tobytes()),
                          name=f"re-baselined on the {len(y)} labelled samples the "
                               f"{len(devices)} devices of cohort {res.cohort} tuned on"))
    heal_info: dict[str, Any] = {"job_id": res.job_id, "event_id": res.event_id,
                                 "cohort": res.cohort, "alert_sha256": sha256_bytes(alert)}
    if plan is not None and plan.policy_sha256 is not None:
        lineage = (*lineage, LineageRef("autoheal_policy", plan.policy_sha256,
                                        name=f"auto-heal policy {plan.policy or '?'}"))
        heal_info["policy"] = {"name": plan.policy, "sha256": plan.policy_sha256}
    extra = dict(card.extra or {}, heal=heal_info)
    return run.model, dataclasses.replace(card, lineage=lineage, extra=extra), reference


def _refit(model: bytes, card: ModelCard, base: bytes, base_card: ModelCard | None,
           plan: HealPlan, work: Path, res: HealResult) -> tuple[bytes, ModelCard]:
    """Re-fit the fine-tuned model under the base's budget: the base's recipe, and never
    bigger than the base (a fine-tune that grew would not fit where the base fits). The base is
    measured as served with its embedding output (what the fine-tune adds to the graph)."""
    import dataclasses

    from edgeloop.federated.server import with_embedding

    base = with_embedding(base)

    recipe = (base_card.recipe if base_card is not None else None) if plan.refit == "base" \
        else plan.refit
    out = model
    if recipe and plan.dataset:
        from edgeloop.optimize import optimize

        src = work / "candidate.onnx"
        src.write_bytes(model)
        fitted = optimize(src, recipe, plan.dataset, out_dir=work / "refit",
                          max_drop=plan.max_drop)
        out = (work / "refit" / "model.onnx").read_bytes()
        card = dataclasses.replace(
            card, sha256=sha256_bytes(out), size_bytes=len(out),
            metrics={**card.metrics, **fitted.metrics}, recipe=fitted.recipe,
            lineage=(*card.lineage, LineageRef("source_model", sha256_bytes(model),
                                               name="the federated candidate")))
        res.refit = {"recipe": recipe, "dataset": plan.dataset}
    else:
        res.refit = {"recipe": None,
                     "why": "the base has no recipe (it ships as it was exported)"
                     if not recipe else "no calibration data set given"}
    res.refit |= {"bytes": len(out), "base_bytes": len(base), "within": len(out) <= len(base)}
    if len(out) > len(base) * 1.01:
        raise FleetError(f"the re-fitted model is {len(out):,} bytes, more than the base's "
                         f"{len(base):,}: over the budget the base was fitted to")
    return out, card


def _refit_text(refit: Mapping[str, Any]) -> str:
    how = f"requantized with {refit['recipe']}" if refit.get("recipe") else \
        f"kept as trained ({refit.get('why')})"
    return f"{how}: {refit['bytes']:,} bytes vs the base's {refit['base_bytes']:,}"


def _register(fleet: FleetAccess, *, reg_args: tuple[bytes, ModelCard, Any], res: HealResult,
              work: Path, run_record: bytes) -> tuple[int, bytes]:
    """Pack (signed, encrypted, with the new reference) and push the new version."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    from edgeloop.bundle import load_public_key, load_signing_key, load_trust, pack, verify
    from edgeloop.registry import Registry

    model, card, reference = reg_args
    fleet_pub = load_public_key(fleet.keys / "fleet.pub.pem")
    if not isinstance(fleet_pub, X25519PublicKey):
        raise InputError(f"{fleet.keys / 'fleet.pub.pem'} is not an X25519 encryption key")
    sign = load_signing_key(fleet.keys / "release.pem", fleet.passphrase)
    (work / "model.onnx").write_bytes(model)
    (work / "run.json").write_bytes(run_record)
    (work / "reference.json").write_bytes(reference.to_json())
    with Registry(fleet.db_url, fleet.data) as reg:
        version = max((v.version for v in reg.list_versions(res.model)), default=0) + 1
        blob = pack(model, card, version, sign, [fleet_pub], name=res.model,
                    reference=reference)
        verify(blob, load_trust(fleet.keys / "root.json"))
        path = work / f"{res.model}-{version}.elb"
        path.write_bytes(blob)
        reg.blobs.put_file(work / "run.json")
        reg.blobs.put_file(work / "reference.json")
        v = reg.push(work / "model.onnx", res.model, card=card, version=version,
                     bundles=[(path, "any", {})], description=card.description,
                     reason=f"heal of job {res.job_id} (alert event {res.event_id})")
    res.bundle_bytes = len(blob)
    return v.version, blob


def _release(fleet: FleetAccess, res: HealResult, version: int) -> None:
    """Publish through the server, then list deltas from the versions the field runs."""
    from edgeloop.bundle import load_encryption_key, load_signing_key
    from edgeloop.client import AdminClient
    from edgeloop.update import KeyRing, Repository

    admin = AdminClient(fleet.url, fleet.admin_token, timeout_s=120.0, verify=fleet.verify)
    admin.publish(res.model, version)
    installed: set[str] = set()  # the bundles the field runs (installed or known good)
    for d in admin.devices():
        for key in ("installed", "known_good"):
            entry = d.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
                installed.add(entry["sha256"])
    repo = Repository(fleet.repo, KeyRing(fleet.keys, fleet.passphrase))
    target = next((t for t, info in repo.targets().items()
                   if (info.unrecognized_fields.get("custom", {}).get("name") == res.model
                       and info.unrecognized_fields.get("custom", {}).get("version") == version
                       and not info.unrecognized_fields.get("custom", {}).get("delta"))), None)
    if target is None:
        raise FleetError(f"{res.model}@{version} is not in the signed targets after publishing")
    sign = load_signing_key(fleet.keys / "release.pem", fleet.passphrase)
    fleet_key = load_encryption_key(fleet.keys / "fleet.pem", fleet.passphrase)
    written = repo.write_deltas(target, sign, fleet_key, from_bundles=installed or None)
    res.deltas = {d.path: d.length for d in written}


def _roll_out(fleet: FleetAccess, res: HealResult, version: int, plan: HealPlan, *,
              started: int | None = None,
              record: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Start the staged rollout (or, ``started``, follow the one an earlier attempt started;
    else one of this version to this cohort already running) and wait for its end."""
    from edgeloop.client import RolloutClient

    client = RolloutClient(fleet.url, fleet.admin_token, verify=fleet.verify)
    gates = list(plan.gates)
    acc = (res.gate or {}).get("candidate_accuracy")
    if plan.gates == DEFAULT_GATES and isinstance(acc, float):
        floor = f"{max(acc - EST_MARGIN, 0.0):.3f}"
        gates += [f"est_accuracy>={floor}", f"realized_accuracy>={floor}"]
    cohort = None if res.cohort in ("", "*") else res.cohort
    if started is None and record is not None:  # died between the start and recording it?
        started = next((int(r["id"]) for r in client.list(res.model)  # the job's own version
                        if r.get("to_version") == version), None)
        if started is not None:
            record(started)
    if started is not None:
        r = client.get(started)
    else:
        r = client.start(res.model, version, stages=plan.stages, soak_s=plan.soak_s,
                         gates=gates, cohort=cohort, min_devices=plan.min_devices,
                         min_requests=plan.min_requests)
        if record is not None:
            record(int(r["id"]))
    if plan.wait_s > 0:
        r = client.wait(r["id"], ("completed", "rolled_back", "aborted"), timeout_s=plan.wait_s)
    events = [str(e["to_state"]) for e in r.get("events", []) if e.get("to_state")]
    failed = next((str(e.get("reason", "")) for e in r.get("events", [])
                   if e.get("to_state") == "failed"), None)
    return {"id": r["id"], "state": r["state"], "reason": failed or r.get("reason", ""),
            "cohort": res.cohort, "gates": gates, "events": events}
