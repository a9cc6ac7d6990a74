"""How a simulation spreads a dataset over clients: ``iid``, ``dirichlet:ALPHA`` (label skew:
each class is split over clients by a Dirichlet(ALPHA) draw; small ALPHA, few classes per
client) and ``drift:FRACTION`` (iid, and that fraction of the clients see shifted inputs)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from edgeloop.errors import DataError, InputError

__all__ = ["PARTITIONS", "parse_partition", "partition"]

PARTITIONS = ("iid", "dirichlet:ALPHA", "drift:FRACTION")


def parse_partition(spec: str) -> tuple[str, float]:
    """``iid`` -> (iid, 0), ``dirichlet:0.5`` -> (dirichlet, 0.5), ``drift:0.2`` -> (drift, 0.2)."""
    kind, _, value = spec.partition(":")
    if kind == "iid" and not value:
        return "iid", 0.0
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if kind == "dirichlet" and math.isfinite(x) and 0.01 <= x <= 1000:
        return kind, x
    if kind == "drift" and math.isfinite(x) and 0 < x < 1:
        return kind, x
    raise InputError(f"partition {spec!r:.60}: expected iid, dirichlet:ALPHA (0.01..1000) or "
                     "drift:FRACTION (0 < F < 1)")


def partition(labels: npt.ArrayLike, clients: int, spec: str, seed: int = 0,
              ) -> tuple[list[npt.NDArray[np.int64]], set[int]]:
    """Sample indices per client (every sample used once) and the clients whose inputs drift
    (0-based); every client gets at least one sample."""
    kind, value = parse_partition(spec)
    y = np.asarray(labels).astype(np.int64)
    if clients < 1 or clients > len(y):
        raise DataError(f"{clients} clients for {len(y)} samples: need 1 <= clients <= samples")
    rng = np.random.default_rng([seed, 0xF1])
    if kind == "dirichlet":
        parts: list[list[int]] = [[] for _ in range(clients)]
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            share = rng.dirichlet(np.full(clients, value))
            cuts = (np.cumsum(share)[:-1] * len(idx)).astype(int)
            for i, piece in enumerate(np.split(idx, cuts)):
                parts[i].extend(piece.tolist())
        for i in range(clients):  # an empty client takes one sample from the largest
            if not parts[i]:
                big = max(range(clients), key=lambda j: len(parts[j]))
                parts[i].append(parts[big].pop())
        out = [np.sort(np.array(p, np.int64)) for p in parts]
    else:
        out = [np.sort(p) for p in np.array_split(rng.permutation(len(y)), clients)]
    drifted: set[int] = set()
    if kind == "drift":
        k = max(1, round(value * clients))
        drifted = {int(i) for i in rng.choice(clients, size=k, replace=False)}
    return out, drifted
