"""The candidate's model card and monitoring reference: what a registry version of a federated
run carries. Its lineage names the base version (``parent_version``), the run's record
(``federated_round``: run id, strategy, rounds, participant counts, privacy parameters; the
record's sha256) and the new monitoring reference (``monitor_reference``)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import numpy.typing as npt

from edgeloop.artifacts import LineageRef, ModelCard, sha256_bytes
from edgeloop.federated.device import EMBEDDING_OUTPUT
from edgeloop.federated.server._simulate import SimulationResult
from edgeloop.monitor.sketch import MonitorReference

__all__ = ["candidate_card", "candidate_reference"]


def candidate_reference(result: SimulationResult, x: npt.ArrayLike, labels: npt.ArrayLike,
                        classes: tuple[str, ...] | None = None) -> MonitorReference:
    """The candidate's monitoring reference on held-out data, watched through its embedding."""
    from edgeloop.bundle import model_reference

    return model_reference(result.model, x, labels, classes=classes,
                           embedding_output=EMBEDDING_OUTPUT)


def candidate_card(result: SimulationResult, *, name: str, base_card: ModelCard | None = None,
                   base_ref: str | None = None, record_sha256: str | None = None,
                   reference_sha256: str | None = None) -> ModelCard:
    """The candidate's card: the base's card (inputs, outputs, labels, dataset) with the
    candidate's hash, the gate's accuracies as metrics and the federated lineage."""
    gate = result.gate
    p = result.participants()
    metrics: dict[str, float] = {
        "fl_rounds": float(result.plan.rounds), "fl_clients": float(result.plan.clients),
        "fl_rounds_aggregated": float(p["rounds_aggregated"]),
        "fl_updates_aggregated": float(p["aggregated_updates"]),
    }
    if gate.candidate_accuracy is not None and gate.base_accuracy is not None:
        metrics |= {"fl_accuracy": gate.candidate_accuracy,
                    "fl_base_accuracy": gate.base_accuracy, "fl_eval_samples": gate.samples}
    privacy = result.privacy
    description = (f"federated run {result.run_id}: {result.plan.strategy}, "
                   f"{result.plan.rounds} rounds, {p['clients']} clients "
                   f"({p['aggregated_updates']} updates aggregated in "
                   f"{p['rounds_aggregated']} rounds), trainer {result.plan.trainer}, "
                   f"compression {result.plan.compression}, privacy "
                   + ", ".join(f"{k}={v}" for k, v in privacy.items()))
    lineage = [LineageRef("parent_version", result.base_sha256, name=base_ref)]
    if record_sha256:
        lineage.append(LineageRef("federated_round", record_sha256, name=result.run_id))
    if reference_sha256:
        lineage.append(LineageRef("monitor_reference", reference_sha256))
    fields: dict[str, Any] = {
        "name": name, "sha256": sha256_bytes(result.model), "size_bytes": len(result.model),
        "metrics": metrics, "lineage": tuple(lineage), "description": description,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if base_card is None:
        return ModelCard(**fields)
    return dataclasses.replace(base_card, **fields, recipe=None)
