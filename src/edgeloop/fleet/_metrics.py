"""Prometheus metrics for one app: request counts and latencies, auth failures, devices.

Each app has its own ``CollectorRegistry`` (several apps in one test process do not collide).
Device counts are read from the database at scrape time, so every process reports the whole
fleet, not what it happened to see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "FleetMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Devices(Collector):
    def __init__(self, count: Callable[[], dict[str, int]]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "edgeloop_fleet_devices", "Devices in the fleet by state", labels=["state"]
        )
        for state, n in sorted(self._count().items()):
            family.add_metric([state], n)
        yield family


class FleetMetrics:
    def __init__(self, count_devices: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "edgeloop_fleet_requests",
            "HTTP requests served, by route and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgeloop_fleet_request_seconds",
            "Time to answer a request, by route",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "edgeloop_fleet_auth_failures",
            "Refused device or admin requests, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.assignments = Counter(
            "edgeloop_fleet_assignments",
            "Signed assignments issued at check-in, by model and version",
            ["model", "version"],
            registry=self.registry,
        )
        self.registry.register(_Devices(count_devices))
        self._served: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def served(self, endpoint: str, status: int, seconds: float) -> None:
        """Count a request and observe its latency. The labelled series are kept per route and
        status (a few dozen): ``labels()`` validates and locks on every call, twice a request."""
        series = self._served.get((endpoint, status))
        if series is None:
            series = self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint)
            self._served[(endpoint, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
