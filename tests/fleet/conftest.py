"""Fleet server fixtures: an app in-process, devices that sign their requests, releases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edgeloop.artifacts import DeviceProfile, ModelCard
from edgeloop.bundle import (
    generate_encryption_key,
    generate_signing_key,
    load_public_key,
    load_signing_key,
    pack,
)
from edgeloop.fleet import FleetSettings, create_app
from edgeloop.protocol import ENROLL_DEVICE_ID, public_hex, sign_request
from edgeloop.registry import Registry

VNNI = DeviceProfile(
    name="xeon", source="measured", arch="x86_64", cpu_model="Xeon", isa=("avx2", "avx512_vnni")
)
PLAIN = DeviceProfile(
    name="pi", source="measured", arch="aarch64", cpu_model="Cortex-A72", isa=("neon",)
)


def make_model(n_in: int = 4, n_out: int = 3, seed: int = 0) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@dataclass
class Device:
    """A device that signs its requests as the protocol says (what the agent does)."""

    client: TestClient
    profile: DeviceProfile = VNNI
    signing: Any = field(default_factory=generate_signing_key)
    encryption: Any = field(default_factory=generate_encryption_key)
    device_id: str = ""
    enrollment: dict[str, Any] = field(default_factory=dict)

    def enroll_body(self, token: str) -> bytes:
        return json.dumps(
            {
                "token": token,
                "signing_key": public_hex(self.signing),
                "encryption_key": public_hex(self.encryption),
                "profile": self.profile.to_dict(),
                "agent_version": "0.1.0",
                "name": "test-device",
            }
        ).encode()

    def enroll(self, token: str) -> Any:
        body = self.enroll_body(token)
        headers = sign_request(self.signing, ENROLL_DEVICE_ID, "POST", "/v1/enroll", body)
        r = self.client.post("/v1/enroll", content=body, headers=headers)
        if r.status_code == 201:
            self.enrollment = r.json()
            self.device_id = self.enrollment["device_id"]
        return r

    def signed(self, path: str, payload: dict[str, Any], **kw: Any) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload).encode()
        return body, sign_request(self.signing, self.device_id, "POST", path, body, **kw)

    def post(self, path: str, payload: dict[str, Any], **kw: Any) -> Any:
        body, headers = self.signed(path, payload, **kw)
        return self.client.post(path, content=body, headers=headers)

    def checkin(self, installed: dict[str, Any] | None = None, **extra: Any) -> Any:
        return self.post(
            "/v1/checkin",
            {"agent_version": "0.1.0", "installed": installed, "health": "ok", **extra},
        )


@dataclass
class Fleet:
    settings: FleetSettings
    client: TestClient
    tmp: Path

    @property
    def admin_token(self) -> str:
        return self.settings.admin_token_path.read_text().strip()

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def token(self, **body: Any) -> str:
        r = self.client.post("/v1/admin/tokens", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    profiles = {"vnni": VNNI, "arm": PLAIN}

    def new_device(self, profile: str = "vnni") -> Device:
        """A device with fresh keys, not enrolled yet."""
        return Device(self.client, self.profiles[profile])

    def device(self, profile: str = "vnni", **token: Any) -> Device:
        """A device enrolled with a fresh token (``token`` fields: model, labels, ttl_s)."""
        d = self.new_device(profile)
        r = d.enroll(self.token(**token))
        assert r.status_code == 201, r.text
        return d

    def push(
        self, model: str, version: int, variants: dict[str, dict[str, Any]], *, encrypt: bool = True
    ) -> None:
        """Pack one bundle per variant (signed by the fleet's release key) and push them."""
        keys = self.settings.keys_path
        release = load_signing_key(keys / "release.pem")
        fleet_pub = load_public_key(keys / "fleet.pub.pem")
        recipients = [fleet_pub if encrypt else generate_encryption_key().public_key()]
        onnx = make_model(seed=version)
        card = ModelCard(name=model, sha256="")
        specs = []
        for variant, reqs in variants.items():
            data = pack(onnx, card, version, release, recipients, name=model, requirements=reqs)
            path = self.tmp / f"{model}-{version}-{variant}.elb"
            path.write_bytes(data)
            specs.append((path, variant, {}))
        src = self.tmp / f"{model}-{version}.onnx"
        src.write_bytes(onnx)
        with Registry(self.settings.db_url, self.settings.registry_path) as reg:
            reg.push(src, model, version=version, bundles=specs)

    def release(self, model: str, version: int, variants: dict[str, dict[str, Any]]) -> Any:
        self.push(model, version, variants)
        r = self.client.post(
            "/v1/admin/releases", json={"model": model, "version": version}, headers=self.admin
        )
        assert r.status_code == 201, r.text
        r = self.client.put(
            f"/v1/admin/models/{model}/desired", json={"version": version}, headers=self.admin
        )
        assert r.status_code == 200, r.text
        return r


@pytest.fixture
def fleet_settings(tmp_path: Path, db_url: str) -> FleetSettings:
    return FleetSettings(
        db_url=db_url, data_dir=tmp_path / "data", poll_interval_s=30.0, create_release_keys=True
    )


@pytest.fixture
def fleet(fleet_settings: FleetSettings, tmp_path: Path) -> Iterator[Fleet]:
    """The app in-process on each database engine (SQLite and PostgreSQL)."""
    with TestClient(create_app(fleet_settings)) as client:
        yield Fleet(fleet_settings, client, tmp_path)


@pytest.fixture
def sqlite_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """The app in-process on SQLite only, for tests that do not depend on the engine."""
    settings = FleetSettings(
        db_url=f"sqlite:///{tmp_path / 'fleet.db'}",
        data_dir=tmp_path / "data",
        poll_interval_s=30.0,
        create_release_keys=True,
    )
    with TestClient(create_app(settings)) as client:
        yield Fleet(settings, client, tmp_path)


@pytest.fixture
def fleet_on(tmp_path: Path) -> Callable[[FleetSettings, TestClient], Fleet]:
    """Wrap a client of an app you started yourself (e.g. across restarts) as a Fleet."""
    return lambda settings, client: Fleet(settings, client, tmp_path)
