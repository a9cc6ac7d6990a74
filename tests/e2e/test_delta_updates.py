"""Issue 16 end to end on a real ``edgeloop server``: ``edgeloop release --deltas`` lists a delta
for the version in the field; one device updates by that delta, one takes the full bundle
after its delta is mangled in transit (forced fallback), and one whose full download broke
off resumes it with an HTTP Range request instead of starting over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgeloop.agent import Agent
from edgeloop.hardware import load_target
from edgeloop.update import HttpxFetcher

X = np.ones((1, 4), dtype=np.float32)


class Wire(httpx.BaseTransport):
    """Real HTTP to the server; records target requests; can flip a byte of delta answers
    (``mangle``) or cut the next full-bundle answer after half its body (``cut``)."""

    def __init__(self, mangle: bool = False, cut: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.mangle, self.cut = mangle, cut
        self.targets: list[tuple[str, str | None, int, int]] = []  # path, Range, status, bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        path = request.url.path
        if "/tuf/targets/" not in path:
            return response
        body = response.read()
        rng = request.headers.get("range")
        if self.mangle and path.endswith(".eld"):
            body = body[:100] + bytes([body[100] ^ 1]) + body[101:]
        if self.cut and path.endswith(".elb"):
            self.cut = False
            half = body[: len(body) // 2]
            self.targets.append((path, rng, response.status_code, len(half)))

            class Broken(httpx.SyncByteStream):
                def __iter__(self) -> Iterator[bytes]:
                    yield half
                    raise httpx.RemoteProtocolError("peer closed connection mid-body")

            return httpx.Response(
                response.status_code, headers=response.headers, stream=Broken(), request=request
            )
        self.targets.append((path, rng, response.status_code, len(body)))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )


def _agent(fleet_server: Any, root: Path, name: str, **kw: Any) -> Agent:
    return Agent(
        None,
        root / name,
        provisioning=fleet_server.provision(),
        profile=load_target("rpi4"),
        poll_interval_s=1.0,
        confirm_after_s=0.0,
        **kw,
    )


@pytest.mark.slow
def test_fleet_updates_by_delta_with_a_forced_fallback_and_a_resumed_download(
    fleet_server: Any, tmp_path: Path, cli: Any
) -> None:
    fleet_server.publish("kws", 1, scale=1.0, n_weights=200_000)  # ~800 kB
    by_delta = _agent(fleet_server, tmp_path, "a")
    fallback = _agent(fleet_server, tmp_path, "b")
    resumed = _agent(fleet_server, tmp_path, "c", deltas=False)
    for agent in (by_delta, fallback, resumed):
        agent.poll_sync()
        assert agent.model is not None and agent.model.version == 1

    # v2: the same weights but the scale (a head-only change); released with a delta from v1
    fleet_server.publish("kws", 2, scale=2.0, n_weights=200_000, desired=False)
    data = fleet_server.data
    bundle = fleet_server.tmp / "kws-2.elb"
    r = cli(
        "release", bundle, "--repo", data / "tuf", "--keys", data / "keys", "--deltas",
        "--target", "kws/2/kws-2-fp32.elb",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "delta kws/2/kws-2-fp32.from-1-" in r.stdout
    fleet_server.desire("kws", 2)
    full = bundle.stat().st_size

    wire = Wire()
    by_delta.fetcher = HttpxFetcher(httpx.Client(transport=wire, timeout=30))
    by_delta.poll_sync()
    assert by_delta.model is not None and by_delta.model.version == 2
    assert float(by_delta.predict({"x": X})["y"][0, 0]) == 2.0
    assert [p.rsplit(".", 1)[1] for p, *_ in wire.targets] == ["eld"]
    m = by_delta.telemetry.totals
    assert m["delta_updates"] == 1 and m["delta_bytes_downloaded"] < full / 10

    wire = Wire(mangle=True)
    fallback.fetcher = HttpxFetcher(httpx.Client(transport=wire, timeout=30))
    fallback.poll_sync()
    assert fallback.model is not None and fallback.model.version == 2
    assert [p.rsplit(".", 1)[1] for p, *_ in wire.targets] == ["eld", "elb"]
    assert fallback.telemetry.totals["delta_fallbacks"] == 1

    wire = Wire(cut=True)
    resumed.fetcher = HttpxFetcher(httpx.Client(transport=wire, timeout=30))
    resumed.poll_sync()
    assert resumed.model is not None and resumed.model.version == 1  # still serving v1
    resumed.poll_sync()
    assert resumed.model is not None and resumed.model.version == 2
    (p1, r1, s1, n1), (p2, r2, s2, n2) = wire.targets
    assert p1 == p2 and r1 is None and s1 == 200 and n1 == full // 2
    assert r2 == f"bytes={full // 2}-" and s2 == 206 and n2 == full - full // 2  # the rest only
    for agent in (by_delta, fallback, resumed):
        agent.close()
