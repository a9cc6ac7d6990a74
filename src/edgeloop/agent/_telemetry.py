"""Telemetry: count requests and errors, keep latencies, and turn a window into a report.

:class:`Telemetry` is fed by the serving path (thread-safe, O(1) per request) and emptied into a
:class:`~edgeloop.artifacts.DeviceReport` once per reporting window. Latencies are kept in a
bounded reservoir (uniform sample of the window), so memory stays flat under any request rate
and the percentiles stay unbiased. Resource figures (RSS, CPU) come from psutil at report time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np

from edgeloop.artifacts import DeviceReport

__all__ = ["Telemetry", "process_resources"]

RESERVOIR = 2048


def process_resources() -> dict[str, float]:
    """Resident memory (MB) and CPU use (% of one core since the last call) of this process."""
    import psutil

    p = psutil.Process()
    return {"rss_mb": p.memory_info().rss / 2**20, "cpu_percent": float(p.cpu_percent(None))}


class Telemetry:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        reservoir: int = RESERVOIR,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._size = reservoir
        self._rng = rng or random.Random(0)
        self._lock = threading.Lock()
        self.totals: dict[str, float] = {"requests": 0.0, "errors": 0.0}  # since start, never reset
        self._gauges: dict[str, float] = {}  # current values, kept across windows
        self._reset(clock())

    def _reset(self, now: float) -> None:
        self._start = now
        self._requests = 0
        self._errors = 0
        self._latencies: list[float] = []
        self._seen = 0
        self._counters: dict[str, float] = {}

    def record(self, latency_ms: float | None, ok: bool = True) -> None:
        """One inference: its latency (None when it failed before running) and its outcome."""
        with self._lock:
            self._requests += 1
            self.totals["requests"] += 1
            if not ok:
                self._errors += 1
                self.totals["errors"] += 1
            if latency_ms is None:
                return
            self._seen += 1
            if len(self._latencies) < self._size:
                self._latencies.append(latency_ms)
            else:
                j = self._rng.randrange(self._seen)
                if j < self._size:
                    self._latencies[j] = latency_ms

    def gauge(self, name: str, value: float) -> None:
        """A current value reported in every window until changed (not a count)."""
        with self._lock:
            self._gauges[name] = float(value)

    def count(self, name: str, n: float = 1.0) -> None:
        """Any other event of the window: self-test failures, installs, rollbacks ..."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0.0) + n
            self.totals[name] = self.totals.get(name, 0.0) + n

    @property
    def requests(self) -> int:
        return self._requests

    @property
    def errors(self) -> int:
        return self._errors

    def metrics(self) -> dict[str, float]:
        with self._lock:
            return self._metrics_locked()

    def _metrics_locked(self) -> dict[str, float]:
        out: dict[str, float] = {
            "requests": float(self._requests),
            "errors": float(self._errors),
            "error_rate": self._errors / self._requests if self._requests else 0.0,
        }
        if self._latencies:
            lat = np.asarray(self._latencies, dtype=np.float64)
            p50, p90, p99 = np.percentile(lat, [50, 90, 99])
            out.update(
                p50_ms=float(p50),
                p90_ms=float(p90),
                p99_ms=float(p99),
                mean_ms=float(lat.mean()),
                max_ms=float(lat.max()),
            )
        out.update(self._gauges)
        out.update(self._counters)
        return out

    def report(
        self,
        device_id: str,
        model: str | None,
        version: int | None,
        *,
        agent_version: str | None = None,
        resources: dict[str, float] | None = None,
        reset: bool = True,
    ) -> DeviceReport:
        """The window so far as a report; ``reset`` starts the next window."""
        with self._lock:
            now = self._clock()
            metrics = self._metrics_locked()
            window = max(now - self._start, 0.0)
            if reset:
                self._reset(now)
        if resources:
            metrics.update(resources)
        return DeviceReport(
            device_id=device_id,
            model=model,
            version=version,
            window_s=window,
            metrics=metrics,
            agent_version=agent_version,
            sent_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
