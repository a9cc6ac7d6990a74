"""``edgeloop autoheal worker --ca``: a worker reaches an HTTPS fleet server whose certificate a
private CA signed (the session's test CA; the server named ``localhost``, as a remote server
is named, so the loopback exception of the server's own child does not apply). Without the CA,
or with another CA, the worker stops at start with one line naming the fix; with it, the
worker heals a queued job over TLS (publish, deltas, rollout through the admin API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("onnx")

from fl_model import blobs, model_bytes  # noqa: E402

pytestmark = pytest.mark.slow

POLICY = {
    "rules": [{"name": "drift", "match": {"kinds": ["drift"]}, "action": "heal"}],
    "budget": {"rounds": 2, "max_devices": 4, "max_minutes": 1},
    "rollout": {"stages": [50, 100], "soak_s": 1},
}
DRIFT = {"drifted": ["f0", "f1"], "metrics": {"drift_psi_max": 0.4}}


def _worker(srv: Any, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    data = srv.data
    url = srv.url.replace("127.0.0.1", "localhost")
    assert url.startswith("https://localhost:")
    args = ["autoheal", "worker", str(tmp / "policy.json"), "--server", url, "--db",
            srv.db_url, "--data", str(data), "--dataset", str(tmp / "cohort.npz"),
            "--devices", "4", "--severity", "0.5", "--wait", "0", "--once", "--name", "tls-1",
            *extra]
    env = {k: v for k, v in os.environ.items() if k != "EDGELOOP_CA"}
    return subprocess.run([sys.executable, "-m", "edgeloop", *args], capture_output=True,
                          text=True, env=dict(env, COLUMNS="200"), timeout=400)


def test_worker_reaches_a_private_ca_https_server_with_ca(tls_fleet_server: Any, test_ca: Any,
                                                          rogue_ca: Any, tmp_path: Path) -> None:
    from edgeloop.db import make_engine, read_session, utcnow, write_session
    from edgeloop.fleet import autoheal_run
    from edgeloop.fleet._monitor_jobs import queue_job

    srv = tls_fleet_server
    srv.publish("blobs", 1, scale=1.0, onnx=model_bytes())
    x, y = blobs(800)
    np.savez(tmp_path / "cohort.npz", x=x, y=y)
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))

    for extra in ((), ("--ca", str(rogue_ca.ca_pem))):
        r = _worker(srv, tmp_path, *extra)
        err = " ".join(r.stderr.split())  # one message, however the console wrapped it
        assert r.returncode != 0, r.stdout + r.stderr
        assert "does not verify" in err and "--ca" in err, r.stderr
        assert "Traceback" not in r.stderr
    r = _worker(srv, tmp_path, "--ca", str(tmp_path / "missing.pem"))
    assert r.returncode != 0 and "missing.pem" in r.stderr + r.stdout

    engine = make_engine(srv.db_url)
    try:
        with write_session(engine) as s:
            row, _ = queue_job(s, "finetune", "blobs", 1, "region=north", reason="drift",
                               now=utcnow(), detail=DRIFT)
            job = int(row.id)
        r = _worker(srv, tmp_path, "--ca", str(test_ca.ca_pem))
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"job {job}: healed" in " ".join(r.stdout.split()), r.stdout
        with read_session(engine) as s:
            run = autoheal_run(s, job)
        assert run is not None and run["state"] == "succeeded", run
        assert run["result"]["version"] == 2 and run["steps"]["rollout"]["id"] >= 1
    finally:
        engine.dispose()
