"""Monitoring end to end: a real server on loopback, real (simulated) agents, a webhook.

A fifth of the fleet (region=north) drifts: a covariate shift of its inputs. The server sees
only the agents' window sketches (no raw data), detects the drift, names the cohort, raises
the alert after two bad evaluations (hysteresis), POSTs it to the webhook, pauses the
running rollout of the model and queues a fine-tuning job for the cohort; the cohorts of
devices that do not drift raise nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from classifier_model import classifier_bytes, reference, sample
from edgeloop.agent import Simulator, simulated_profiles
from edgeloop.client import MonitorClient, RolloutClient, create_tokens

from .conftest import FleetServer

N = 20
DRIFTED = frozenset(range(N // 5))  # a fifth of the devices


def region(i: int) -> dict[str, str]:
    return {"region": "north" if i in DRIFTED else ("south" if i % 2 else "east")}


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def webhook():
    _Hook.received = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", _Hook.received
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def monitored_server(tmp_path, webhook):
    srv = FleetServer(tmp_path / "data", f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path)
    srv.start(1.0, ("--monitor-window", "3", "--monitor-interval", "3",
                    "--monitor-webhook", webhook[0], "--monitor-pause-rollouts",
                    "--monitor-finetune"))
    try:
        yield srv
    finally:
        srv.stop()


def _inputs(i: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], int]:
    x, y = sample(1, rng)
    return {"x": x}, int(y[0])


@pytest.mark.slow
def test_drift_on_a_fifth_of_the_fleet_is_found_named_alerted_and_pauses_the_rollout(
    monitored_server, webhook, tmp_path, cli
):
    srv = monitored_server
    ref = reference()
    srv.publish("clf", 1, 1.0, onnx=classifier_bytes(), reference=ref)
    srv.publish("clf", 2, 1.0, onnx=classifier_bytes(), reference=ref, desired=False)
    token = (srv.data / "admin-token").read_text().strip()
    monitor = MonitorClient(srv.url, token)
    rollouts = RolloutClient(srv.url, token)

    async def scenario() -> dict[str, Any]:
        tokens = await create_tokens(srv.url, token, N)
        sim = Simulator(srv.url, tmp_path / "devices", tokens, simulated_profiles("mix", N),
                        poll_interval_s=1.0, rps=6.0, inputs=_inputs, drifted=DRIFTED,
                        shift=1.5, feedback_share=0.1, feedback_delay_s=0.5,
                        device_labels=region, provisioning=srv.provision())
        await sim.warm_up()
        assert sim.serving() == {"clf@1": N}
        rollout = await asyncio.to_thread(rollouts.start, "clf", 2, stages=(10, 100),
                                          soak_s=600.0, min_devices=1)
        t0 = time.monotonic()

        def alerted() -> bool:
            st = monitor.status("clf")
            return any(a["active"] and a["cohort"] == "region=north" for a in st["alerts"])

        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set() and time.monotonic() - t0 < 90:
                if await asyncio.to_thread(alerted):
                    done.set()
                    return
                await asyncio.sleep(0.5)
            done.set()

        watcher = asyncio.create_task(watch())
        await sim.run(95.0, until=done.is_set)
        await watcher
        detected_s = time.monotonic() - t0
        labels_sent = sim.labels_sent
        await sim.aclose()
        return {"rollout": rollout["id"], "detected_s": detected_s, "labels": labels_sent}

    out = asyncio.run(scenario())
    status = monitor.status("clf")
    active = {(a["version"], a["cohort"]) for a in status["alerts"] if a["active"]}
    assert (1, "region=north") in active, status["alerts"]
    # the cohorts made only of devices that do not drift raise nothing
    assert not {c for _, c in active} & {"region=south", "region=east"}
    north = next(a for a in status["alerts"] if a["cohort"] == "region=north" and a["active"])
    assert "x0" in north["detail"]["drifted"] or "x1" in north["detail"]["drifted"]
    # the raised alert paused the running rollout, naming the cohort
    deadline = time.monotonic() + 10
    while rollouts.get(out["rollout"])["state"] != "paused" and time.monotonic() < deadline:
        time.sleep(0.2)
    r = rollouts.get(out["rollout"])
    assert r["state"] == "paused", r["reason"]
    # the pause names the cohort: its own alert, or the fleet-wide one it explains
    assert r["reason"].startswith("monitoring alert on clf@1: cohort "), r["reason"]
    assert "region=north" in r["reason"] and "south" not in r["reason"], r["reason"]
    deadline = time.monotonic() + 10
    while not webhook[1] and time.monotonic() < deadline:
        time.sleep(0.2)
    hooks = [h for h in webhook[1] if h["cohort"] == "region=north"]
    assert hooks and hooks[0]["event"] == "raised" and hooks[0]["model"] == "clf"
    # the first alert raised (north's, or the fleet-wide one it explains) paused the rollout
    assert any(f"paused rollout {out['rollout']}" in a for h in webhook[1] for a in h["actions"])
    # ... and queued a fine-tuning job for the drifting cohort, none for the others
    jobs = monitor.jobs(kind="finetune")
    assert any((j["cohort"], j["version"], j["state"]) == ("region=north", 1, "queued")
               for j in jobs), jobs
    assert not {j["cohort"] for j in jobs} & {"region=south", "region=east"}
    # delayed labels arrived and realized accuracy is known where they exist
    report = monitor.report("clf", 1, cohort="region=north")
    assert out["labels"] > 0
    assert any("realized_accuracy" in e["metrics"] for e in report["evaluations"])
    html = monitor.report_html("clf", 1, cohort="region=north")
    assert "data:image/png;base64," in html and "region=north" in html
    (tmp_path / "report.html").write_text(html)
    # the CLI shows the same, through the admin client
    admin = ("--server", srv.url, "--data", str(srv.data))
    st = cli("monitor", *admin, "status", "clf@1")
    assert st.returncode == 0, st.stderr
    assert "region=north" in st.stdout and "ACTIVE" in st.stdout
    rep = cli("monitor", *admin, "report", "clf@1", "--cohort", "region=north", "--since", "1h")
    assert rep.returncode == 0, rep.stderr
    assert "DRIFT" in rep.stdout and "est accuracy" in rep.stdout
    page = cli("monitor", *admin, "report", "clf@1", "--html", str(tmp_path / "cli.html"))
    assert page.returncode == 0 and "data:image/png" in (tmp_path / "cli.html").read_text()
    queued = cli("monitor", *admin, "jobs", "--state", "queued")
    assert queued.returncode == 0 and "region=north" in queued.stdout, queued.stderr
    bad = cli("monitor", *admin, "report", "clf")
    assert bad.returncode != 0 and "MODEL@VERSION" in bad.stderr
