"""A real fleet server (``edgeloop server``) on 127.0.0.1 in a child process, and releases."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FleetServer:
    url: str
    data: Path
    db_url: str
    tmp: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.data / 'admin-token').read_text().strip()}"}

    def start(self, poll_interval: float = 1.0, extra: tuple[str, ...] = ()) -> None:
        log = open(self.tmp / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER,
                "--db",
                self.db_url,
                "--data",
                str(self.data),
                "--port",
                str(self.port),
                "--poll-interval",
                str(poll_interval),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.tmp / "server.log").read_text()[-3000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("fleet server did not answer /healthz within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def token(self, model: str | None = None) -> str:
        r = httpx.post(self.url + "/v1/admin/tokens", json={"model": model}, headers=self.admin)
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
        )
        assert r.status_code == 201, r.text
        if desired:
            self.desire(model, version)

    def desire(self, model: str, version: int) -> None:
        r = httpx.put(
            self.url + f"/v1/admin/models/{model}/desired",
            json={"version": version},
            headers=self.admin,
        )
        assert r.status_code == 200, r.text

    def device(self, device_id: str) -> dict[str, Any]:
        r = httpx.get(self.url + f"/v1/admin/devices/{device_id}", headers=self.admin)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
def fleet_server(tmp_path: Path) -> Iterator[FleetServer]:
    """``edgeloop server`` on SQLite in tmp_path, polled every second."""
    port = _free_port()
    srv = FleetServer(
        url=f"http://127.0.0.1:{port}",
        data=tmp_path / "data",
        db_url=f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp=tmp_path,
        port=port,
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
