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
on with the nodes that answered. Imports ``flwr`` (the ``federated`` extra).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edgeloop.errors import InputError
from edgeloop.federated.device._compress import encode_update, wire_bytes
from edgeloop.federated.device._trainers import LocalTrainer, NDArrays, train_config

__all__ = ["CLIPPING_NORM", "TrainerProvider", "client_app", "clip_update"]

# the round config key Flower's DifferentialPrivacyClientSideFixedClipping sets
CLIPPING_NORM = "clipping_norm"


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
    wrapped around both handlers (``fixedclipping_mod``, a simulation's attacker, ...)."""
    app = ClientApp(mods=mods)

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
