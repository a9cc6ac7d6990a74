"""The server half of federated learning (build layer): Flower's ServerApp and strategies
around the device half's ClientApp, the in-process simulation, the federated evaluation gate,
and the candidate model (the base ONNX model with the federated head).

::

    plan = SimulationPlan(clients=20, rounds=10, partition="dirichlet:0.5", strategy="fedavg")
    result = simulate(model_bytes, x, y, plan)     # same ClientApp/ServerApp as a deployment
    result.gate.accepted, result.gate.reason       # candidate vs base on held-out feedback
    result.model, result.record()                  # the candidate ONNX and the run's record

Registering the candidate is the caller's (the CLI's): this layer never imports the registry.
Imports ``flwr`` (the ``federated`` extra), ``onnx``, ``torch`` (the full trainer, only when
used) and the device half.
"""

from edgeloop.federated.server._card import candidate_card, candidate_reference
from edgeloop.federated.server._deploy import DeployPlan, deploy, deployment_fab
from edgeloop.federated.server._grid import InProcessGrid
from edgeloop.federated.server._hybrid import (
    SchedulePlan,
    ScheduleResult,
    ScheduleStep,
    hybrid_schedule,
)
from edgeloop.federated.server._onnx_head import read_head, with_embedding, write_head
from edgeloop.federated.server._partition import PARTITIONS, parse_partition, partition
from edgeloop.federated.server._privacy import (
    DP_MODES,
    PrivacyPlan,
    PrivacySpend,
    combinations,
    noise_for_epsilon,
    rdp_epsilon,
)
from edgeloop.federated.server._secagg import SecAggSettings, payload_bytes, secagg_rounds
from edgeloop.federated.server._serverapp import (
    GateResult,
    RunOutcome,
    evaluate_gate,
    run_rounds,
    server_app,
)
from edgeloop.federated.server._simulate import (
    TRAINERS,
    SimulationPlan,
    SimulationResult,
    drift_inputs,
    simulate,
)
from edgeloop.federated.server._strategy import STRATEGIES, RoundGuard, RoundLog, make_strategy
from edgeloop.federated.server._superlink import SuperLink, kill_group, superlink_command
from edgeloop.federated.server._torch_trainer import TorchTrainer, export_candidate, state_arrays

__all__ = [
    "DP_MODES",
    "PARTITIONS",
    "STRATEGIES",
    "TRAINERS",
    "DeployPlan",
    "GateResult",
    "InProcessGrid",
    "PrivacyPlan",
    "PrivacySpend",
    "RoundGuard",
    "RoundLog",
    "RunOutcome",
    "SchedulePlan",
    "ScheduleResult",
    "ScheduleStep",
    "SecAggSettings",
    "SimulationPlan",
    "SimulationResult",
    "SuperLink",
    "TorchTrainer",
    "candidate_card",
    "candidate_reference",
    "combinations",
    "deploy",
    "deployment_fab",
    "drift_inputs",
    "evaluate_gate",
    "export_candidate",
    "hybrid_schedule",
    "kill_group",
    "make_strategy",
    "noise_for_epsilon",
    "parse_partition",
    "partition",
    "payload_bytes",
    "rdp_epsilon",
    "read_head",
    "run_rounds",
    "secagg_rounds",
    "server_app",
    "simulate",
    "state_arrays",
    "superlink_command",
    "with_embedding",
    "write_head",
]
