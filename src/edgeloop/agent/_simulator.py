"""Run N real agents in one process against a real fleet server (asyncio, loopback).

Each simulated device is a full :class:`~edgeloop.agent.Agent`: its own keys, state directory,
enrollment, signed requests, TUF downloads, verification, A/B slots and telemetry. What is
shared is only what a process can share without changing behaviour: one HTTP connection pool
for the protocol, one for TUF downloads, one thread pool for file and model work, and one
loaded model per bundle hash (:class:`ModelCache`), so 10,000 devices do not need 10,000 ONNX
Runtime sessions. Each device also runs a synthetic inference workload (Poisson arrivals at
``rps`` per device) through its agent, so the telemetry it reports is real.

For monitoring, the workload's inputs can come from a callable (``inputs``: device index and a
numpy generator in, feeds and the true label out), a chosen set of devices can drift (a
covariate shift of their float inputs, :func:`covariate_shift`), and a share of predictions
get their true label later through ``agent.feedback`` (``feedback_share``, after
``feedback_delay_s``), as a real application would send delayed labels.

The simulator measures every protocol request at the HTTP layer (latency and status by
endpoint) and when each device first served each version.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from edgeloop.agent._agent import Agent
from edgeloop.agent._models import LoadedModel, ModelCache
from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import InputError
from edgeloop.protocol import Provisioning, tls_context

if TYPE_CHECKING:
    from edgeloop.update import HttpxFetcher

__all__ = ["InputSource", "SimulationResult", "Simulator", "covariate_shift",
           "simulated_profiles"]

# device index, a numpy generator -> the feeds of one inference and its true label (or None)
InputSource = Callable[[int, np.random.Generator], tuple[dict[str, np.ndarray], int | None]]


def covariate_shift(
    feeds: Mapping[str, np.ndarray], shift: float, scale: float = 1.0
) -> dict[str, np.ndarray]:
    """A covariate shift of every float input: ``x * scale + shift`` (in the inputs' units).
    Integer inputs (token ids) are left alone. Numpy only, as a device's sensors would drift:
    an offset (``shift``) and a gain (``scale``)."""
    out = {}
    for k, v in feeds.items():
        a = np.asarray(v)
        out[k] = (a * scale + shift).astype(a.dtype) if np.issubdtype(a.dtype, np.floating) else a
    return out

_DEVICES_PER_CLIENT = 16  # simulated devices sharing one HTTP client (and its pool)


def simulated_profiles(kind: str, n: int, seed: int = 0) -> list[DeviceProfile]:
    """``mix``: the built-in targets in turn; ``this``: this machine (measured once); or one
    built-in target's name for every device."""
    from edgeloop.hardware import list_targets, load_target, profile_device

    if kind == "this":
        return [profile_device(quick=True)] * n
    names = list_targets() if kind == "mix" else [kind]
    profiles = [load_target(name) for name in names]
    rng = random.Random(seed)
    out = [profiles[i % len(profiles)] for i in range(n)]
    rng.shuffle(out)
    return out


@dataclass
class _Requests:
    """Latency and status of every protocol request, by endpoint."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    wire_bytes: Counter[str] = field(default_factory=Counter)  # bodies and headers, both ways

    async def on_request(self, request: httpx.Request) -> None:
        request.extensions["edgeloop_t0"] = time.perf_counter()

    async def on_response(self, response: httpx.Response) -> None:
        t0 = response.request.extensions.get("edgeloop_t0")
        path = response.request.url.path
        if t0 is not None:
            self.latencies[path].append((time.perf_counter() - t0) * 1e3)
        self.statuses[(path, response.status_code)] += 1
        request = response.request
        try:
            sent = len(request.content)
        except httpx.RequestNotRead:  # a streamed body (none of the protocol's)
            sent = 0
        sent += sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + len(request.url.raw_path)
        got = int(response.headers.get("content-length") or 0)
        got += sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
        self.wire_bytes[path] += sent + got


@dataclass(frozen=True)
class SimulationResult:
    devices: int
    duration_s: float
    enrolled: int
    serving: dict[str, int]  # "model@version" (or "none") -> devices
    requests: dict[str, dict[str, float]]  # endpoint -> count, rate_per_s, p50_ms, p99_ms, errors
    inferences: int
    inference_errors: int
    installs: int
    poll_failures: int
    loads: int  # models really loaded in this process (shared by hash)
    bundle_bytes_on_disk: int = 0  # slot bytes on disk (light mode: each bundle once)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Simulator:
    """``Simulator(url, root, tokens, profiles)``; ``await sim.run(duration_s)``."""

    def __init__(
        self,
        server_url: str,
        state_root: str | Path,
        tokens: Sequence[str],
        profiles: Sequence[DeviceProfile],
        *,
        poll_interval_s: float = 10.0,
        rps: float = 0.5,
        workers: int = 16,
        seed: int = 0,
        labels: dict[str, str] | None = None,
        fault: Callable[[LoadedModel], float] | None = None,
        provisioning: Provisioning | None = None,
        insecure_first_use: bool = False,
        inputs: InputSource | None = None,
        drifted: Collection[int] = (),
        shift: float = 0.0,
        scale: float = 1.0,
        feedback_share: float = 0.0,
        feedback_delay_s: float = 1.0,
        device_labels: Callable[[int], Mapping[str, str]] | None = None,
        light: bool = False,
    ) -> None:
        if len(tokens) != len(profiles):
            raise InputError(
                f"{len(tokens)} tokens for {len(profiles)} profiles; expected one each"
            )
        self.server_url = server_url.rstrip("/")
        # every device pins the same provisioned trust (its own token overrides the file's)
        self.provisioning = provisioning
        self.verify: ssl.SSLContext | bool = True
        if provisioning is not None and provisioning.ca_pem is not None:
            self.verify = tls_context(provisioning.ca_pem)
        self.root = Path(state_root)
        # light mode (10,000 devices on one disk): every slot is a hard link to one
        # content-addressed copy of its bundle under ROOT/blobs; with the shared ModelCache,
        # one inference session per bundle. The protocol is untouched: each device has its
        # keys, signs its requests, verifies its signed assignment and TUF metadata, downloads
        # and reports on its own.
        self.light = light
        self.rps = rps
        self.fault = fault  # model -> share of its inferences that fail (a bad release)
        if not 0.0 <= feedback_share <= 1.0 or feedback_delay_s < 0:
            raise InputError(f"feedback share {feedback_share} and delay {feedback_delay_s} s: "
                             "expected a share in [0, 1] and a delay >= 0")
        self.inputs = inputs
        self.drifted = frozenset(drifted)
        self.shift, self.scale = shift, scale
        self.feedback_share, self.feedback_delay_s = feedback_share, feedback_delay_s
        self.np_rng = np.random.default_rng(seed)
        self.labels_sent = 0
        self.rng = random.Random(seed)
        self.cache = ModelCache()
        self.requests = _Requests()
        # One small client per group of devices, not one big one: httpcore's pool scans every
        # connection for every request it assigns, so a single pool of hundreds of connections
        # made this process, not the server, the limit of the fleet benchmark (profiled).
        limits = httpx.Limits(
            max_connections=_DEVICES_PER_CLIENT, max_keepalive_connections=_DEVICES_PER_CLIENT
        )
        self.clients = [
            httpx.AsyncClient(
                timeout=120.0,
                limits=limits,
                verify=self.verify,
                event_hooks={"request": [self._on_request], "response": [self._on_response]},
            )
            for _ in range(max(1, -(-len(tokens) // _DEVICES_PER_CLIENT)))
        ]
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim")
        self.fetcher: HttpxFetcher | None = None
        self.started = 0.0
        self.first_served: dict[tuple[int, str], float] = {}
        self._inputs: dict[str, dict[str, np.ndarray]] = {}
        self.agents = [
            Agent(
                self.server_url,
                self.root / f"device-{i:05d}",
                enroll_token=token,
                profile=profile,
                name=f"sim-{i:05d}",
                labels=dict(
                    labels or {},
                    **(device_labels(i) if device_labels else {}),
                    simulated="1",
                    target=profile.name,
                ),
                cache=self.cache,
                http=self.clients[i // _DEVICES_PER_CLIENT],
                poll_interval_s=poll_interval_s,
                rng=random.Random(seed * 1_000_003 + i),
                provisioning=provisioning,
                insecure_first_use=insecure_first_use,
                shared_blobs=self.root / "blobs" if light else None,
            )
            for i, (token, profile) in enumerate(zip(tokens, profiles, strict=True))
        ]

    async def _on_request(self, request: httpx.Request) -> None:
        await self.requests.on_request(request)

    async def _on_response(self, response: httpx.Response) -> None:
        await self.requests.on_response(response)

    def reset_stats(self) -> None:
        """Forget the requests measured so far (e.g. after a warm-up)."""
        self.requests = _Requests()

    async def warm_up(self, concurrency: int = 64) -> None:
        """One poll per device (enrollment, first install), ``concurrency`` at a time."""
        asyncio.get_running_loop().set_default_executor(self.executor)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int, agent: Agent) -> None:
            agent.fetcher = self._fetcher()
            async with sem:
                await agent.poll_once()
            self._mark(i, agent)

        await asyncio.gather(*(one(i, a) for i, a in enumerate(self.agents)))

    # --- the devices ---------------------------------------------------------------------
    def _fetcher(self) -> HttpxFetcher:
        if self.fetcher is None:
            from edgeloop.update import HttpxFetcher

            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            self.fetcher = HttpxFetcher(
                httpx.Client(timeout=120.0, limits=limits, verify=self.verify)
            )
        return self.fetcher

    def _mark(self, i: int, agent: Agent) -> None:
        m = agent.model
        if m is not None:
            self.first_served.setdefault((i, f"{m.name}@{m.version}"), time.monotonic())

    async def _device(self, i: int, agent: Agent, stop: asyncio.Event, end: float) -> None:
        agent.fetcher = self._fetcher()
        delay = self.rng.uniform(0, agent.backoff.interval)  # devices do not start in lock-step
        while not stop.is_set():
            if delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=min(delay, end - time.monotonic()))
            if stop.is_set() or time.monotonic() >= end:
                return
            delay = await agent.poll_once()
            self._mark(i, agent)

    def _synthetic(self, agent: Agent) -> dict[str, np.ndarray] | None:
        m = agent.model
        if m is None:
            return None
        feeds = self._inputs.get(m.sha256)
        if feeds is None:
            from edgeloop.bundle import synthesize_inputs

            feeds = synthesize_inputs({s.name: (s.dtype, s.shape) for s in m.manifest.inputs})
            self._inputs[m.sha256] = feeds
        return feeds

    async def _workload(self, agents: Sequence[Agent], stop: asyncio.Event, end: float) -> None:
        """Poisson arrivals at ``rps`` per device, spread over the devices at random."""
        total = self.rps * len(agents)
        if total <= 0:
            return
        while not stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(self.rng.expovariate(total))
            i = self.rng.randrange(len(agents))
            agent = agents[i]
            label: int | None = None
            if self.inputs is not None:
                if agent.model is None:
                    continue
                feeds, label = self.inputs(i, self.np_rng)
            else:
                synthetic = self._synthetic(agent)
                if synthetic is None:
                    continue
                feeds = synthetic
            if i in self.drifted:
                feeds = covariate_shift(feeds, self.shift, self.scale)
            m = agent.model
            if self.fault is not None and m is not None and self.rng.random() < self.fault(m):
                agent.telemetry.record(None, ok=False)  # an injected failure of this release
                continue
            try:
                pid, _ = agent.predict_tracked(feeds)
            except Exception:  # counted by the agent's telemetry; the workload goes on
                continue
            if label is not None and self.rng.random() < self.feedback_share:
                asyncio.get_running_loop().call_later(
                    self.feedback_delay_s, self._feedback, agent, pid, label
                )

    def _feedback(self, agent: Agent, prediction_id: str, label: int) -> None:
        with contextlib.suppress(Exception):  # a model switched meanwhile: the label is lost
            agent.feedback(prediction_id, label)
            self.labels_sent += 1

    async def _watch(self, until: Callable[[], bool], stop: asyncio.Event, end: float) -> None:
        while not stop.is_set() and time.monotonic() < end:
            if until():
                stop.set()
                return
            await asyncio.sleep(0.1)

    async def run(
        self,
        duration_s: float,
        stop: asyncio.Event | None = None,
        until: Callable[[], bool] | None = None,
    ) -> SimulationResult:
        """Run every device for ``duration_s`` seconds (or until ``stop`` is set or ``until()``
        turns true), then summarise."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(self.executor)
        self.started = time.monotonic()
        end = self.started + duration_s
        tasks = [
            asyncio.create_task(self._device(i, a, stop, end)) for i, a in enumerate(self.agents)
        ]
        tasks.append(asyncio.create_task(self._workload(self.agents, stop, end)))
        if until is not None:
            tasks.append(asyncio.create_task(self._watch(until, stop, end)))
        try:
            await asyncio.gather(*tasks)
        finally:
            stop.set()
        return self.result(time.monotonic() - self.started)

    def serving(self) -> Counter[str]:
        return Counter(
            f"{a.model.name}@{a.model.version}" if a.model else "none" for a in self.agents
        )

    def result(self, elapsed: float) -> SimulationResult:
        reqs: dict[str, dict[str, float]] = {}
        for path, lat in self.requests.latencies.items():
            arr = np.asarray(lat)
            errors = sum(
                n for (p, code), n in self.requests.statuses.items() if p == path and code >= 400
            )
            reqs[path] = {
                "count": float(arr.size),
                "rate_per_s": arr.size / elapsed if elapsed > 0 else 0.0,
                "p50_ms": float(np.percentile(arr, 50)),
                "p99_ms": float(np.percentile(arr, 99)),
                "errors": float(errors),
                "bytes_per_request": self.requests.wire_bytes[path] / max(arr.size, 1),
            }
        totals = [a.telemetry.totals for a in self.agents]
        return SimulationResult(
            devices=len(self.agents),
            duration_s=elapsed,
            enrolled=sum(a.identity is not None for a in self.agents),
            serving=dict(self.serving()),
            requests=reqs,
            inferences=int(sum(t["requests"] for t in totals)),
            inference_errors=int(sum(t["errors"] for t in totals)),
            installs=int(sum(t.get("installs", 0) for t in totals)),
            poll_failures=int(sum(t.get("poll_failures", 0) for t in totals)),
            loads=self.cache.loads,
            bundle_bytes_on_disk=self.bundle_bytes_on_disk(),
        )

    def bundle_bytes_on_disk(self) -> int:
        """Bytes the devices' slots take on disk, each file (inode) counted once."""
        seen: set[tuple[int, int]] = set()
        total = 0
        for path in self.root.glob("device-*/slots/*/bundle.elb"):
            try:
                st = path.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
        if self.fetcher is not None:
            self.fetcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        for a in self.agents:
            a.close()
