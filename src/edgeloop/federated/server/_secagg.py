"""Rounds under SecAgg+: Flower's ``SecAggPlusWorkflow`` (its legacy workflow) runs each round's
fit, so the server learns only the weighted mean of the devices' updates, never one update.

Flower 1.42 has SecAgg+ only on its legacy workflow: ``SecAggPlusWorkflow`` needs a
``LegacyContext`` (a legacy ``Strategy`` and ``ClientManager``) and talks to the devices'
``secaggplus_mod`` in four stages of ``train`` messages (setup: public keys; share keys:
encrypted Shamir shares of each node's mask seed and key; collect masked vectors: each node
trains, then sends its update quantized, weighted by its sample count and masked; unmask: the
surviving nodes send the shares that remove the masks, a dropped node's pairwise masks
included). Flower's ``DefaultWorkflow`` would drive it round by round with legacy evaluation;
:func:`secagg_rounds` drives it the same way (one ``workflow(grid, context)`` call per round,
as ``DefaultWorkflow`` does) with edgeloop's round bookkeeping and the Message-API federated
evaluation the devices' ClientApp speaks. ``_MaskedMean`` is the legacy strategy: it samples
the round's nodes, sends the global arrays with the train config (plus the arrays' names and
the weight cap, :data:`~edgeloop.federated.device.SECAGG_ARRAYS`), and receives from the
workflow only the unmasked *mean delta* (every result's parameters are that one aggregate).

What the server still sees per device: its sample count (capped at ``max_weight``; Flower's
protocol sends it in the clear to weight the mean) and its training loss. What it cannot check:
a single update (the RoundGuard's per-update checks are impossible by design); each node's
weighted values are clipped element-wise to ``clip_range`` before quantization, and the mean is
checked finite before it is applied. Client-side DP (clipping on the device) adds Flower's
Gaussian noise to the mean here, as its ``DifferentialPrivacyClientSideFixedClipping`` does.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from edgeloop.errors import InputError
from edgeloop.federated.device import CLIPPING_NORM, SECAGG_ARRAYS, SECAGG_MAX_WEIGHT
from edgeloop.federated.server._serverapp import RunOutcome, evaluate_gate
from edgeloop.federated.server._strategy import RoundLog

__all__ = ["SecAggSettings", "payload_bytes", "secagg_rounds"]

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class SecAggSettings:
    """Flower's ``SecAggPlusWorkflow`` parameters (its docstring has the trade-offs).

    ``shares``: the share of the sampled nodes each node's secrets are split among (1.0: all);
    ``threshold``: the share of those that reconstructs a secret (privacy holds against a server
    colluding with fewer nodes; more than ``1 - threshold`` dropping out halts the round);
    ``max_weight``: the cap on a node's sample count (its weight); ``clip_range``: each weighted
    delta value is clipped to +-this before quantization into ``quantization`` levels."""

    shares: float = 1.0
    threshold: float = 0.5
    max_weight: int = 10_000
    clip_range: float = 8.0
    quantization: int = 1 << 22

    def __post_init__(self) -> None:
        checks = {"shares": 0 < self.shares <= 1, "threshold": 0 < self.threshold <= 1,
                  "max_weight": 1 <= self.max_weight <= 1 << 20,
                  "clip_range": 0 < self.clip_range <= 1e6,
                  "quantization": 2 <= self.quantization <= 1 << 24}
        bad = [k for k, ok in checks.items()
               if not ok or not math.isfinite(float(getattr(self, k)))]
        if bad:
            raise InputError(f"SecAgg+ {bad[0]}={getattr(self, bad[0])!r} out of range")

    def step(self, total_weight: float, nodes: int) -> float:
        """The largest error quantization can put on one value of the mean of ``nodes``
        updates with ``total_weight`` samples in all (one level per node, stochastic rounding,
        scaled back by the weights)."""
        level = 2 * self.clip_range / self.quantization
        return nodes * level * self.max_weight / max(total_weight, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def payload_bytes(content: RecordDict) -> int:
    """What a message's records weigh (array data, config bytes and strings, 8 bytes a number),
    framing left out, as ``wire_bytes`` counts an update."""
    total = 0
    for rec in content.array_records.values():
        total += sum(len(a.data) for a in rec.values())
    for cfg in list(content.config_records.values()) + list(content.metric_records.values()):
        for v in cfg.values():
            items = v if isinstance(v, list) else [v]
            for item in items:
                if isinstance(item, bytes):
                    total += len(item)
                elif isinstance(item, str):
                    total += len(item.encode())
                else:
                    total += 8
    return total


class _Metered(Grid):
    """``grid`` with what went out and came back counted, and every reply kept when asked
    (what the server saw)."""

    def __init__(self, grid: Grid, keep: list[Message] | None = None) -> None:
        self.grid = grid
        self.keep = keep
        self.down = self.up = 0

    def set_run(self, run: Run) -> None:  # pragma: no cover - the inner grid has its run
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self.down += sum(payload_bytes(m.content) for m in messages)
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.grid.pull_messages(message_ids))
        self._seen(replies)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        self.down += sum(payload_bytes(m.content) for m in messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        self._seen(replies)
        return replies

    def _seen(self, replies: list[Message]) -> None:
        for r in replies:
            if r.has_content():
                self.up += payload_bytes(r.content)
            if self.keep is not None:
                self.keep.append(r)


def _legacy_strategy(names: list[str], settings: SecAggSettings) -> Any:
    """The legacy strategy SecAggPlusWorkflow asks (module docstring); built lazily because
    Flower's legacy server package is only needed here."""
    from flwr.common import FitIns, Parameters, parameters_to_ndarrays
    from flwr.server.strategy import Strategy

    class MaskedMean(Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.sampled: list[Any] = []
            self.config: dict[str, Any] = {}
            self.mean: list[np.ndarray] | None = None
            self.weights: list[int] = []
            self.losses: list[tuple[float, int]] = []
            self.failures = 0

        def prepare(self, proxies: list[Any], config: dict[str, Any]) -> None:
            self.sampled, self.config = proxies, config
            self.mean, self.weights, self.losses, self.failures = None, [], [], 0

        def initialize_parameters(self, client_manager: Any) -> Parameters | None:
            return None

        def configure_fit(self, server_round: int, parameters: Parameters,
                          client_manager: Any) -> list[tuple[Any, Any]]:
            config = self.config | {SECAGG_ARRAYS: json.dumps(names),
                                    SECAGG_MAX_WEIGHT: settings.max_weight,
                                    "server-round": server_round}
            return [(p, FitIns(parameters, dict(config))) for p in self.sampled]

        def aggregate_fit(self, server_round: int, results: list[tuple[Any, Any]],
                          failures: list[Any]) -> tuple[Parameters | None, dict[str, Any]]:
            self.failures = len(failures)
            if not results:
                return None, {}
            self.mean = parameters_to_ndarrays(results[0][1].parameters)
            for _, res in results:
                n = res.num_examples
                self.weights.append(n)
                loss = res.metrics.get("train-loss")
                if isinstance(loss, float | int) and math.isfinite(loss):
                    self.losses.append((float(loss), n))
            return results[0][1].parameters, {}

        def configure_evaluate(self, server_round: int, parameters: Parameters,
                               client_manager: Any) -> list[tuple[Any, Any]]:
            return []

        def aggregate_evaluate(self, server_round: int, results: list[Any],
                               failures: list[Any]) -> tuple[float | None, dict[str, Any]]:
            return None, {}

        def evaluate(self, server_round: int, parameters: Parameters,
                     ) -> tuple[float, dict[str, Any]] | None:
            return None

    return MaskedMean()


def secagg_rounds(grid: Grid, initial: Arrays, *, rounds: int, train_config: dict[str, Any],
                  timeout: float, quorum: int, fraction: float = 1.0,
                  settings: SecAggSettings | None = None, dp_noise: float = 0.0,
                  dp_clip: float = 0.0, on_round: Callable[[RoundLog], None] | None = None,
                  seen: list[Message] | None = None,
                  checkpoint: Callable[[int, Arrays], None] | None = None) -> RunOutcome:
    """``rounds`` FedAvg rounds whose fit is Flower's SecAgg+ (module docstring); the global
    arrays after the last round that reached ``quorum`` masked updates. With ``dp_noise`` the
    devices clip their update's L2 norm to ``dp_clip`` and the mean gets Gaussian noise.
    ``seen`` collects every reply the server received (what it could look at);
    ``checkpoint(round, arrays)`` gets the new global arrays after each aggregated round."""
    from flwr.common import ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.supercore.differential_privacy import add_gaussian_noise_inplace, compute_stdv

    settings = settings or SecAggSettings()
    if quorum < 1:
        raise InputError(f"quorum {quorum}: expected at least 1")
    if (dp_noise > 0) != (dp_clip > 0):
        raise InputError("differential privacy needs both dp_noise > 0 and dp_clip > 0")
    names = sorted(initial)
    glob = {k: np.asarray(initial[k], np.float32) for k in names}
    strategy = _legacy_strategy(names, settings)
    metered = _Metered(grid, seen)
    workflow = SecAggPlusWorkflow(
        num_shares=float(settings.shares), reconstruction_threshold=float(settings.threshold),
        max_weight=float(settings.max_weight), clipping_range=float(settings.clip_range),
        quantization_range=int(settings.quantization), timeout=timeout)
    context = LegacyContext(Context(run_id=grid.run.run_id, node_id=0, node_config={},
                                    state=RecordDict(), run_config={}), strategy=strategy)
    config = dict(train_config) | ({CLIPPING_NORM: float(dp_clip)} if dp_noise > 0 else {})
    outcome = RunOutcome(arrays=dict(glob))
    for r in range(1, rounds + 1):
        nodes = sorted(grid.get_node_ids())
        k = min(len(nodes), max(2, int(len(nodes) * fraction)))
        picked = random.sample(nodes, k) if len(nodes) >= 2 else []
        log = RoundLog(r, sampled=len(picked))
        if len(picked) < 2:
            log.note = f"{len(nodes)} nodes connected: SecAgg+ needs at least 2; not aggregated"
        else:
            strategy.prepare([GridClientProxy(n, grid, grid.run.run_id) for n in picked], config)
            context.state.config_records[MAIN_CONFIGS_RECORD] = _round_config(r)
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
                ndarrays_to_parameters([glob[n] for n in names]), keep_input=True)
            metered.down = metered.up = 0
            workflow(metered, context)
            log.bytes_down, log.bytes_up = metered.down, metered.up
            answered = len(strategy.weights)
            log.answered, log.failed = answered, len(picked) - answered
            if strategy.losses:
                log.train_loss = (sum(v * w for v, w in strategy.losses)
                                  / sum(w for _, w in strategy.losses))
            mean = strategy.mean
            if mean is None:
                log.note = ("SecAgg+ halted: too few nodes stayed through its four stages to "
                            "unmask the sum; not aggregated")
            elif answered < quorum:
                log.note = (f"{answered} masked updates, below the quorum of {quorum}: "
                            "not aggregated")
            elif len(mean) != len(names) or any(m.shape != glob[n].shape
                                                for m, n in zip(mean, names, strict=False)) \
                    or not all(np.all(np.isfinite(m)) for m in mean):
                log.note = "the unmasked mean did not match the global arrays: not applied"
            else:
                delta = [np.asarray(m, np.float32) for m in mean]
                if dp_noise > 0:
                    add_gaussian_noise_inplace(delta, compute_stdv(dp_noise, dp_clip, len(picked)))
                glob = {n: (glob[n] + d).astype(np.float32) for n, d in zip(names, delta,
                                                                             strict=True)}
                log.aggregated = True
                if answered < len(picked):
                    log.note = (f"{len(picked) - answered} of {len(picked)} sampled devices "
                                f"dropped out during SecAgg+: the mean of {answered} unmasked "
                                f"(quorum {quorum})")
        outcome.rounds.append(log)
        if log.aggregated:
            outcome.arrays = dict(glob)
            if checkpoint is not None:
                checkpoint(r, dict(glob))
            acc = evaluate_gate(grid, glob, dict(initial),
                                trainer=str(train_config.get("trainer", "head")),
                                timeout=timeout).candidate_accuracy
            if acc is not None:
                outcome.round_accuracy[r] = acc
        if on_round is not None:
            on_round(log)
    return outcome


def _round_config(server_round: int) -> Any:
    from flwr.app import ConfigRecord
    from flwr.server.workflow.constant import Key

    return ConfigRecord({Key.CURRENT_ROUND: server_round, Key.START_TIME: time.time()})
