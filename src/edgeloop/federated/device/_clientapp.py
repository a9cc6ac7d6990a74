"""The Flower ClientApp (Message API) that a device runs in federated rounds.

One app, several trainers: the round's config names the trainer (``trainer``: ``head`` for the
torch-free head trainer here, ``full`` for a torch fine-tune a build machine registers), and the
node's :data:`TrainerProvider` gives the trainers this node has. Messages:

- ``train``: ``arrays`` (the global arrays), ``config`` (``epochs``, ``lr``, ``batch-size``,
  ``proximal-mu`` from FedProx, ``compression``, ``server-round``, ``seed``). Reply: ``arrays``,
  the encoded delta (``encode_update``), and ``metrics`` (``num-examples``, ``train-loss``,
  ``update-bytes``).
- ``evaluate``: ``arrays`` (a candidate) and optionally ``base`` (the version it would replace),
  scored on the node's held-out labelled samples. Reply ``metrics``: ``num-examples``,
  ``eval-loss``, ``eval-acc`` and, with a base, ``base-loss``, ``base-acc``.

A node without labelled samples raises, which Flower turns into an error reply: the round goes
on with the nodes that answered.

SecAgg+ (:func:`secagg_mod`, on every deployed node): a ``train`` message that carries Flower's
``secaggplus`` config record is a stage of Flower's SecAgg+ protocol (its legacy
``SecAggPlusWorkflow`` on the server) and goes through Flower's ``secaggplus_mod``; at the
stage that collects the masked vectors the mod asks the app for a legacy ``FitRes``, which
:func:`secagg_mod` makes from this app's own ``train`` reply: the *dense delta* (the fit
instructions name the arrays, ``edgeloop-arrays``, in the order of the legacy parameter list),
its sample count capped at ``edgeloop-max-weight``, and the training loss. The mod then
quantizes, weights and masks the delta and clears it from the reply, so the server only ever
sees masked vectors. Other messages pass through unchanged. Imports ``flwr`` (the
``federated`` extra).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from edgeloop.errors import DataError, InputError
from edgeloop.federated.device._compress import decode_update, encode_update, wire_bytes
from edgeloop.federated.device._trainers import LocalTrainer, NDArrays, train_config

__all__ = ["CLIPPING_NORM", "SECAGG_ARRAYS", "SECAGG_MAX_WEIGHT", "TrainerProvider",
           "client_app", "clip_update", "secagg_mod"]

# the round config key Flower's DifferentialPrivacyClientSideFixedClipping sets
CLIPPING_NORM = "clipping_norm"
# SecAgg+ fit instructions: the arrays' names (JSON list, the legacy parameter order) and the
# cap on a node's weight (Flower's SecAggPlusWorkflow max_weight)
SECAGG_ARRAYS = "edgeloop-arrays"
SECAGG_MAX_WEIGHT = "edgeloop-max-weight"
_MAX_ARRAYS = 4096


TrainerProvider = Callable[[Context], Mapping[str, LocalTrainer]]


def _arrays(record: ArrayRecord) -> NDArrays:
    return {k: v.numpy() for k, v in record.items()}


def _trainer(provider: TrainerProvider, context: Context,
             config: Mapping[str, object]) -> LocalTrainer:
    name = str(config.get("trainer", "head"))
    trainers = provider(context)
    if name not in trainers:
        raise InputError(f"trainer {name!r:.40}: this node has {sorted(trainers)}")
    return trainers[name]


def clip_update(delta: NDArrays, clip: float) -> NDArrays:
    """``delta`` scaled so its L2 norm (over every array) is at most ``clip``."""
    if not (isinstance(clip, float | int) and np.isfinite(clip) and 0 < clip <= 1e6):
        raise InputError(f"clipping norm {clip!r:.40}: expected 0 < clip <= 1e6")
    norm = float(np.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64)))
                             for v in delta.values())))
    if norm <= clip:
        return delta
    scale = np.float32(clip / norm)
    return {k: (np.asarray(v, np.float32) * scale).astype(np.float32) for k, v in delta.items()}


def client_app(provider: TrainerProvider, mods: list[Any] | None = None) -> ClientApp:
    """The ClientApp over the trainers ``provider`` gives each node; ``mods`` are Flower mods
    wrapped around both handlers (``fixedclipping_mod``, a simulation's attacker, ...), inside
    :func:`secagg_mod`, which every app has."""
    app = ClientApp(mods=[secagg_mod, *(mods or [])])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        config = dict(msg.content.config_records["config"])
        start = _arrays(msg.content.array_records["arrays"])
        trainer = _trainer(provider, context, config)
        new, n, loss = trainer.fit(start, train_config(config))
        delta = {k: np.asarray(new[k], np.float32) - np.asarray(v, np.float32)
                 for k, v in start.items()}
        clip = config.get(CLIPPING_NORM)
        if clip is not None:  # client-side DP: the update's L2 norm clipped here, on the device
            delta = clip_update(delta, float(clip))  # type: ignore[arg-type,assignment]
        encoded = encode_update(delta, str(config.get("compression", "none")))
        content = RecordDict({
            "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in encoded.items()}),
            "metrics": MetricRecord({"num-examples": n, "train-loss": loss,
                                     "update-bytes": wire_bytes(encoded)}),
        })
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        config = dict(msg.content.config_records.get("config", {}))
        trainer = _trainer(provider, context, config)
        loss, acc, n = trainer.evaluate(_arrays(msg.content.array_records["arrays"]))
        metrics: dict[str, int | float | list[int] | list[float]] = {
            "num-examples": n, "eval-loss": loss, "eval-acc": acc}
        if "base" in msg.content.array_records:
            b_loss, b_acc, _ = trainer.evaluate(_arrays(msg.content.array_records["base"]))
            metrics |= {"base-loss": b_loss, "base-acc": b_acc}
        return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


def _legacy_train(call_next: Callable[[Message, Context], Message],
                  ) -> Callable[[Message, Context], Message]:
    """Legacy ``FitIns`` in, this app's ``train`` in the middle, legacy ``FitRes`` out (the
    dense delta), for Flower's ``secaggplus_mod`` (module docstring)."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat

    def handle(msg: Message, ctx: Context) -> Message:
        ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        config = dict(ins.config)
        try:
            names = json.loads(str(config.pop(SECAGG_ARRAYS)))
            cap = config.pop(SECAGG_MAX_WEIGHT)
        except (KeyError, ValueError) as e:
            raise DataError(f"SecAgg+ fit instructions without {SECAGG_ARRAYS!r} and "
                            f"{SECAGG_MAX_WEIGHT!r}: {e}") from None
        arrays = parameters_to_ndarrays(ins.parameters)
        if not (isinstance(names, list) and 0 < len(names) == len(arrays) <= _MAX_ARRAYS
                and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)):
            raise DataError(f"SecAgg+ fit instructions: {SECAGG_ARRAYS!r} must name each of "
                            f"the {len(arrays)} arrays once")
        if isinstance(cap, bool) or not isinstance(cap, int | float) or not 1 <= cap <= 1 << 31:
            raise DataError(f"SecAgg+ {SECAGG_MAX_WEIGHT} {cap!r:.40}: expected 1..2**31")
        start = {n: np.asarray(a, np.float32) for n, a in zip(names, arrays, strict=True)}
        msg.content = RecordDict({
            "arrays": ArrayRecord({n: Array(a) for n, a in start.items()}),
            "config": ConfigRecord({**config, "compression": "none"})})  # type: ignore[dict-item]
        reply = call_next(msg, ctx)
        if reply.has_error():
            return reply
        encoded = {k: v.numpy() for k, v in reply.content.array_records["arrays"].items()}
        delta = decode_update(encoded, start)
        metrics = reply.content.metric_records["metrics"]
        n = int(metrics["num-examples"])  # type: ignore[arg-type]
        loss = metrics.get("train-loss")
        fit_metrics: dict[str, bool | bytes | float | int | str] = {}
        if isinstance(loss, float | int) and math.isfinite(loss):
            fit_metrics["train-loss"] = float(loss)
        res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([delta[k] for k in names]),
                     num_examples=min(n, int(cap)), metrics=fit_metrics)
        return Message(compat.fitres_to_recorddict(res, keep_input=False), reply_to=msg)

    return handle


def secagg_mod(msg: Message, ctx: Context, call_next: Callable[[Message, Context], Message],
               ) -> Message:
    """A Flower mod: a SecAgg+ stage goes through Flower's ``secaggplus_mod`` with this app's
    ``train`` answering in the legacy form; anything else passes through (module docstring)."""
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if msg.metadata.message_type == MessageType.TRAIN \
            and RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, ctx, _legacy_train(call_next))
    return call_next(msg, ctx)
