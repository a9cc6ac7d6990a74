"""Several server processes on one database (docs/scale.md): two ``edgeloop server`` processes
sharing a database and data dir, as behind a load balancer, agree on enrollment, replay
protection, the fleet state each caches and a rollout's controls; ``--workers 2`` serves."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeloop.fleet import FleetSettings
from edgeloop.protocol import sign_request, verify_assignment
from live_fleet import LiveServer

FP32: dict[str, dict[str, Any]] = {"fp32": {}}
INSTALLED_V1 = {"model": "kws", "version": 1, "variant": "fp32", "sha256": "0" * 64}


@pytest.fixture
def two_servers(tmp_path: Path, db_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    first = LiveServer(tmp_path / "one")
    first.db = db_url
    (tmp_path / "one").mkdir()
    second = LiveServer(tmp_path / "two")
    (tmp_path / "two").mkdir()
    second.db, second.data = db_url, first.data  # one database, one data dir
    try:
        first.start()  # makes the keys; the second finds them
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()


def _fleet(server: LiveServer, tmp: Path, fleet_on: Any) -> Any:
    settings = FleetSettings(db_url=server.db, data_dir=server.data, create_release_keys=True)
    return fleet_on(settings, httpx.Client(base_url=server.url, timeout=60))


def _version(server: LiveServer, r: httpx.Response, device_id: str) -> int:
    from edgeloop.bundle import load_public_key

    assert r.status_code == 200, r.text
    key = load_public_key(server.data / "director.pub.pem")
    return verify_assignment(r.json()["assignment"], key, device_id=device_id).version


@pytest.mark.slow
def test_two_processes_agree_on_enrollment_replays_fleet_state_and_rollouts(
    two_servers: tuple[LiveServer, LiveServer], tmp_path: Path, fleet_on: Any
) -> None:
    one, two = two_servers
    admin = _fleet(one, tmp_path, fleet_on)
    admin.release("kws", 1, FP32)

    # enrollment: one token, two devices racing through the two processes -> one device
    token = admin.token(model="kws")
    a, b = admin.new_device(), admin.new_device()
    a.client, b.client = httpx.Client(base_url=one.url), httpx.Client(base_url=two.url)
    answers: list[int] = []
    racers = [threading.Thread(target=lambda d=d: answers.append(d.enroll(token).status_code))
              for d in (a, b)]  # fmt: skip
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert sorted(answers) == [201, 401]
    devices = [d for d in (a, b) if d.device_id]
    devices += [admin.device(model="kws") for _ in range(3)]
    for i, d in enumerate(devices):  # enrolled through one, served by both
        d.client = httpx.Client(base_url=(one, two)[i % 2].url)
        assert _version(one, d.checkin(INSTALLED_V1), d.device_id) == 1

    # replay protection: a request answered by one process is refused by the other, and the
    # same request sent to both at once is answered once
    d = devices[0]
    body, headers = d.signed("/v1/checkin", {"agent_version": "0.1.0", "health": "ok"})
    assert httpx.post(one.url + "/v1/checkin", content=body, headers=headers).status_code == 200
    r = httpx.post(two.url + "/v1/checkin", content=body, headers=headers)
    assert r.status_code == 401 and "seen before" in r.json()["detail"]
    body, headers = d.signed("/v1/checkin", {"agent_version": "0.1.0", "health": "ok"})
    codes: list[int] = []
    racers = [
        threading.Thread(
            target=lambda u=u: codes.append(
                httpx.post(u + "/v1/checkin", content=body, headers=headers).status_code
            )
        )
        for u in (one.url, two.url, one.url, two.url)
    ]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert sorted(codes) == [200, 401, 401, 401]

    # the fleet state each process caches follows a change made through the other
    admin.release("kws", 2, FP32)  # through process one
    for d in devices:
        d.client = httpx.Client(base_url=two.url)
        assert _version(two, d.checkin(INSTALLED_V1), d.device_id) == 2
    r = httpx.put(
        two.url + "/v1/admin/models/kws/desired", json={"version": 1}, headers=two.admin
    )
    assert r.status_code == 200, r.text
    for d in devices:
        d.client = httpx.Client(base_url=one.url)
        assert _version(one, d.checkin(INSTALLED_V1), d.device_id) == 1

    # a rollout started through one process, its rate limit held across both
    r = httpx.post(
        one.url + "/v1/admin/rollouts",
        json={"model": "kws", "version": 2, "stages": [100], "max_per_minute": 1},
        headers=one.admin,
    )
    assert r.status_code == 201, r.text
    rollout = r.json()["id"]
    got = []
    for i, d in enumerate(devices):
        server = (one, two)[i % 2]
        d.client = httpx.Client(base_url=server.url)
        got.append(_version(server, d.checkin(INSTALLED_V1), d.device_id))
    assert sorted(got) == [1] * (len(devices) - 1) + [2]  # one device per minute, fleet-wide
    status = httpx.get(f"{two.url}/v1/admin/rollouts/{rollout}", headers=two.admin).json()
    assert status["devices"]["downloading"] == 1


@pytest.mark.slow
def test_workers_flag_runs_several_processes_that_serve(tmp_path: Path, db_url: str) -> None:
    import psutil

    server = LiveServer(tmp_path, "--workers", "2", "--log-level", "info")
    server.db = db_url
    server.start(ready_s=180)  # every worker imports the server and migrates (a shared lock)
    try:
        children = psutil.Process(server.pid).children(recursive=True)
        assert len([c for c in children if "python" in c.name().lower()]) >= 2
        dev = server.device()
        for _ in range(6):  # several connections: any worker answers, the nonces stay unique
            r = dev.checkin()
            assert r.status_code == 200, r.text
        replayed = json.dumps({"agent_version": "0.1.0", "health": "ok"}).encode()
        headers = sign_request(dev.signing, dev.device_id, "POST", "/v1/checkin", replayed)
        codes = {
            httpx.post(server.url + "/v1/checkin", content=replayed, headers=headers).status_code
            for _ in range(4)
        }
        assert codes == {200, 401}
    finally:
        server.stop()
