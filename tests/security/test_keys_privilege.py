"""Attack 4 of issue 13: ``/v1/keys`` re-wrapped the data key of whatever target a device named.
Now only the target the director assigns the device, or the model in one of its slots.
Also the server side of attack 7: the key answer is what the agent retries on (see
tests/agent/test_key_retry.py for the agent).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from edgeloop.artifacts import ModelCard
from edgeloop.bundle import load_public_key, load_signing_key, pack
from edgeloop.protocol import Assignment
from edgeloop.registry import Registry
from live_fleet import LiveDevice, LiveServer

pytestmark = pytest.mark.slow


def _model(scale: float) -> bytes:
    from onnx_writer import FLOAT, model_bytes

    return model_bytes(
        [("Mul", ["x", "s"], ["y"])],
        [("x", FLOAT, ["n", 4])],
        [("y", FLOAT, ["n", 4])],
        {"s": np.array([scale], dtype=np.float32)},
    )


def _release(server: LiveServer, model: str, version: int) -> None:
    """Pack a bundle (release key, encrypted to the fleet key), push it, publish it, desire it."""
    keys = server.data / "keys"
    onnx = _model(float(version))
    data = pack(
        onnx,
        ModelCard(name=model, sha256=""),
        version,
        load_signing_key(keys / "release.pem"),
        [load_public_key(keys / "fleet.pub.pem")],
        name=model,
    )
    bundle = server.tmp / f"{model}-{version}.elb"
    bundle.write_bytes(data)
    src = server.tmp / f"{model}-{version}.onnx"
    src.write_bytes(onnx)
    with Registry(server.db, server.data) as reg:
        reg.push(src, model, version=version, bundles=[(bundle, "default", {})])
    r = httpx.post(
        server.url + "/v1/admin/releases",
        json={"model": model, "version": version},
        headers=server.admin,
    )
    assert r.status_code == 201, r.text
    r = httpx.put(
        f"{server.url}/v1/admin/models/{model}/desired",
        json={"version": version},
        headers=server.admin,
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("keys")).start()
    try:
        _release(live, "kws", 1)
        _release(live, "faces", 1)
        yield live
    finally:
        live.stop()


def _targets(server: LiveServer) -> dict[str, str]:
    rows = server.rows(
        "SELECT r.model, v.target FROM fleet_release_variants v "
        "JOIN fleet_releases r ON r.id = v.release_id"
    )
    return {str(row[0]): str(row[1]) for row in rows}


def _assigned(device: LiveDevice) -> str:
    r = device.checkin()
    assert r.status_code == 200, r.text
    envelope = r.json()["assignment"]
    return Assignment.from_dict(json.loads(base64.b64decode(envelope["payload"]))).target


def test_a_device_gets_the_key_of_its_assigned_target(server):
    device = server.device(model="kws")
    target = _assigned(device)
    assert target == _targets(server)["kws"]

    r = device.post("/v1/keys", {"target": target})

    assert r.status_code == 200, r.text
    assert r.json()["target"] == target


def test_a_device_is_refused_the_key_of_another_models_target(server):
    device = server.device(model="kws")
    _assigned(device)
    before = server.snapshot()

    r = device.post("/v1/keys", {"target": _targets(server)["faces"]})

    assert r.status_code == 403
    assert "neither assigned to this device nor in its slots" in r.json()["detail"]
    assert server.snapshot() == before
    assert "Traceback" not in server.output


def test_a_device_keeps_the_key_of_the_model_in_its_slot(server):
    """A device running ``faces`` (say, before an admin moved it to ``kws``) may still unwrap
    what it holds: the known-good slot must stay loadable."""
    device = server.device(model="kws")
    installed = {"model": "faces", "version": 1, "variant": "default", "sha256": ""}
    assert device.checkin(installed=installed).status_code == 200

    r = device.post("/v1/keys", {"target": _targets(server)["faces"]})

    assert r.status_code == 200, r.text


def test_an_unknown_target_is_404_not_a_key(server):
    device = server.device(model="kws")
    r = device.post("/v1/keys", {"target": "kws/9/nothing.elb"})
    assert r.status_code == 404


def test_keys_need_a_signed_request(server):
    r = httpx.post(server.url + "/v1/keys", json={"target": _targets(server)["kws"]})
    assert r.status_code == 401
