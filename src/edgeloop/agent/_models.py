"""Loaded models, shared by bundle hash.

A :class:`ModelCache` maps a bundle's sha256 to one loaded model and counts who uses it. A real
device has one agent and one cache; the simulator passes one cache to thousands of agents, so a
release loads (and self-tests) once per process instead of once per simulated device: 10,000
ONNX Runtime sessions would not fit in memory. Every agent still downloads and verifies its own
copy; only the decrypted, loaded model is shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgeloop.artifacts import Manifest

__all__ = ["LoadedModel", "ModelCache", "Runnable"]


class Runnable(Protocol):
    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]: ...


@dataclass
class LoadedModel:
    """A verified, decrypted model ready to serve, and what its signed manifest says."""

    sha256: str
    manifest: Manifest
    runner: Runnable
    selftest_ok: bool | None = None  # None: not run yet in this process
    selftest_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self.runner.run(inputs)


class ModelCache:
    """One loaded model per bundle hash, reference-counted, dropped when nobody uses it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, LoadedModel] = {}
        self._users: dict[str, int] = {}
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # how many times a model was really loaded (tests and benchmarks)

    def acquire(self, sha256: str, load: Callable[[], LoadedModel]) -> LoadedModel:
        """The model for ``sha256``, loading it with ``load`` the first time (once, even when
        many threads ask at once)."""
        with self._lock:
            gate = self._loading.setdefault(sha256, threading.Lock())
        with gate:
            with self._lock:
                model = self._models.get(sha256)
            if model is None:
                model = load()
                with self._lock:
                    self._models[sha256] = model
                    self.loads += 1
            with self._lock:
                self._users[sha256] = self._users.get(sha256, 0) + 1
            return model

    def release(self, sha256: str) -> None:
        with self._lock:
            n = self._users.get(sha256, 0) - 1
            if n > 0:
                self._users[sha256] = n
                return
            self._users.pop(sha256, None)
            self._models.pop(sha256, None)
            self._loading.pop(sha256, None)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._models

    def __len__(self) -> int:
        return len(self._models)
