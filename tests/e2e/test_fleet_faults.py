"""A server that dies in the middle of a bundle download: the agent keeps its model, retries."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from edgeloop.agent import Agent
from edgeloop.hardware import load_target
from edgeloop.update import HttpxFetcher

X = np.ones((1, 4), dtype=np.float32)


class _DiesMidTransfer(httpx.BaseTransport):
    """Real HTTP to the server, but a bundle download breaks off after its first half."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.cut = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if "/tuf/targets/" not in request.url.path:
            return response
        body = response.read()
        self.cut += 1
        half = body[: len(body) // 2]

        class _Broken(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                yield half
                raise httpx.RemoteProtocolError("peer closed connection mid-body")

        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Broken(),
            request=request,
        )


@pytest.mark.slow
def test_download_cut_off_midway_keeps_the_model_and_a_later_poll_installs(fleet_server, tmp_path):
    fleet_server.publish("kws", 1, scale=1.0)
    agent = Agent(
        None,
        tmp_path / "dev",
        provisioning=fleet_server.provision(),
        profile=load_target("rpi4"),
        poll_interval_s=1.0,
        confirm_after_s=0.0,
    )
    agent.poll_sync()
    assert agent.model is not None and agent.model.version == 1

    fleet_server.publish("kws", 2, scale=2.0, n_weights=200_000)  # ~800 kB: a real stream
    transport = _DiesMidTransfer()
    agent.fetcher = HttpxFetcher(httpx.Client(transport=transport, timeout=30))
    agent.poll_sync()
    assert transport.cut >= 1, "the download was never attempted"
    assert agent.model is not None and agent.model.version == 1  # still the known-good model
    assert float(agent.predict({"x": X})["y"][0, 0]) == 1.0
    assert agent.state.active is not None and not agent.state.trial
    failed = agent.last_error or agent.poll_error
    assert failed and "broke off" in failed, failed  # reported as a refused download

    agent.fetcher = None  # the server is back: the next poll downloads and installs
    agent.poll_sync()
    assert agent.model is not None and agent.model.version == 2
    assert float(agent.predict({"x": X})["y"][0, 0]) == 2.0
    agent.close()
