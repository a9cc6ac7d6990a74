"""A real fleet server (``edgeloop server``) on 127.0.0.1 in a child process, and releases."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from _live import ChildServer, fleet_ready

# The server command exactly as `edgeloop server` runs it (the same Typer command function),
# without assembling the rest of the CLI, so this fixture depends on the server alone.
SERVER = "import typer; from edgeloop.cli.server import server; typer.run(server)"


def scaled_model(scale: float, n_weights: int = 0) -> bytes:
    """y = x * scale on a [N, 4] float input; ``n_weights`` pads the file with an initializer."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([scale], dtype=np.float32), "s")]
    nodes = [helper.make_node("Mul", ["x", "s"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])]
    if n_weights:
        inits.append(numpy_helper.from_array(np.zeros(n_weights, dtype=np.float32), "pad"))
        nodes.append(helper.make_node("Identity", ["pad"], ["pad_out"]))
        outputs.append(helper.make_tensor_value_info("pad_out", TensorProto.FLOAT, [n_weights]))
    graph = helper.make_graph(
        nodes,
        "scaled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


class FleetServer:
    """``edgeloop server`` in a child process; its port is found race-free (tests/_live.py)
    and kept across ``stop()``/``start()``, so agents holding the URL reach the restarted one.
    With ``ca`` (a tls_certs.TestCA) it serves HTTPS with that CA's certificate."""

    def __init__(
        self,
        data: Path,
        db_url: str,
        tmp: Path,
        poll_interval: float = 1.0,
        ca: Any = None,
    ) -> None:
        self.data, self.db_url, self.tmp, self.ca = data, db_url, tmp, ca
        self.poll_interval = poll_interval
        self.extra: tuple[str, ...] = ()
        tls = [] if ca is None else ["--tls-cert", str(ca.cert_pem), "--tls-key", str(ca.key_pem)]

        def argv(port: int) -> list[str]:
            return [
                sys.executable, "-c", SERVER, "--db", db_url, "--data", str(data),
                "--port", str(port), "--poll-interval", str(self.poll_interval),
                "--create-release-keys", *tls, *self.extra,
            ]  # fmt: skip

        self.child = ChildServer(
            argv,
            tmp / "server.log",
            fleet_ready(data / "admin-token", verify=self.verify),
            scheme="http" if ca is None else "https",
        )

    @property
    def url(self) -> str:
        return self.child.url

    @property
    def port(self) -> int:
        return self.child.port

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What a client that pins this server's CA passes to httpx."""
        return True if self.ca is None else ssl.create_default_context(cafile=str(self.ca.ca_pem))

    def provision(self, model: str | None = None, uses: int = 1) -> Any:
        """A device's provisioning (edgeloop.protocol.Provisioning) for this server."""
        from edgeloop.client import AdminClient

        token = (self.data / "admin-token").read_text().strip()
        ca = None if self.ca is None else self.ca.ca_pem.read_text()
        return AdminClient(self.url, token, verify=self.verify).provision(
            ca_pem=ca, model=model, uses=uses
        )

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.data / 'admin-token').read_text().strip()}"}

    def start(self, poll_interval: float | None = None, extra: tuple[str, ...] = ()) -> None:
        """Start (or restart, on the same port); ``extra``: more ``edgeloop server`` options."""
        if poll_interval is not None:
            self.poll_interval = poll_interval
        self.extra = tuple(extra)
        self.child.start()

    def stop(self) -> None:
        self.child.stop()

    def token(self, model: str | None = None) -> str:
        r = httpx.post(
            self.url + "/v1/admin/tokens",
            json={"model": model},
            headers=self.admin,
            verify=self.verify,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def publish(
        self,
        model: str,
        version: int,
        scale: float,
        n_weights: int = 0,
        desired: bool = True,
        onnx: bytes | None = None,
        reference: Any = None,
    ) -> None:
        """Pack a bundle with the fleet's release key, push it, publish it, make it desired
        (unless ``desired=False``: a staged rollout takes it from there). ``onnx`` and
        ``reference``: another model than y = x * scale, and its monitoring reference."""
        from edgeloop.artifacts import ModelCard
        from edgeloop.bundle import load_public_key, load_signing_key, pack
        from edgeloop.registry import Registry

        keys = self.data / "keys"
        onnx = onnx if onnx is not None else scaled_model(scale, n_weights)
        bundle = pack(
            onnx,
            ModelCard(name=model, sha256=""),
            version,
            load_signing_key(keys / "release.pem"),
            [load_public_key(keys / "fleet.pub.pem")],
            name=model,
            reference=reference,
        )
        path = self.tmp / f"{model}-{version}.elb"
        path.write_bytes(bundle)
        src = self.tmp / f"{model}-{version}.onnx"
        src.write_bytes(onnx)
        with Registry(self.db_url, self.data) as reg:
            reg.push(src, model, version=version, bundles=[(path, "fp32", {})])
        r = httpx.post(
            self.url + "/v1/admin/releases",
            json={"model": model, "version": version},
            headers=self.admin,
            timeout=60,
            verify=self.verify,
        )
        assert r.status_code == 201, r.text
        if desired:
            self.desire(model, version)

    def desire(self, model: str, version: int) -> None:
        r = httpx.put(
            self.url + f"/v1/admin/models/{model}/desired",
            json={"version": version},
            headers=self.admin,
            verify=self.verify,
        )
        assert r.status_code == 200, r.text

    def device(self, device_id: str) -> dict[str, Any]:
        r = httpx.get(
            self.url + f"/v1/admin/devices/{device_id}", headers=self.admin, verify=self.verify
        )
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
def fleet_server(tmp_path: Path) -> Iterator[FleetServer]:
    """``edgeloop server`` on SQLite in tmp_path, polled every second."""
    srv = FleetServer(tmp_path / "data", f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def tls_fleet_server(tmp_path: Path, test_ca: Any) -> Iterator[FleetServer]:
    """``edgeloop server --tls-cert --tls-key`` with the session's test CA, on SQLite."""
    srv = FleetServer(
        tmp_path / "data", f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path, ca=test_ca
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
