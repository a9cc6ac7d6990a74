"""Staged rollouts end to end: the real server on loopback, real (simulated) agents, the CLI."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgeloop.agent import Simulator, simulated_profiles
from edgeloop.client import RolloutClient, create_tokens

N = 20


async def _drive(fleet_server, tmp_path, steps):
    """Run N agents while ``steps(client, sim)`` (a thread) drives rollouts; watch every agent."""
    token = (fleet_server.data / "admin-token").read_text().strip()
    client = RolloutClient(fleet_server.url, token)
    tokens = await create_tokens(fleet_server.url, token, N)
    sim = Simulator(
        fleet_server.url,
        tmp_path / "devices",
        tokens,
        simulated_profiles("mix", N),
        poll_interval_s=1.0,
        rps=4.0,
        fault=lambda m: 0.3 if m.version == 3 else 0.0,  # version 3 is a bad release
        provisioning=fleet_server.provision(),
    )
    await sim.warm_up()
    assert sim.serving() == {"kws@1": N}
    without_model = set()
    done = asyncio.Event()

    async def watch():
        while not done.is_set():
            without_model.update(i for i, a in enumerate(sim.agents) if a.model is None)
            await asyncio.sleep(0.05)

    async def run_steps():
        try:
            return await asyncio.to_thread(steps, client, sim)
        finally:
            done.set()

    watcher = asyncio.create_task(watch())
    runner = asyncio.create_task(run_steps())
    await sim.run(120.0, stop=None, until=done.is_set)
    result = await runner
    await watcher
    await sim.aclose()
    return sim, result, without_model


@pytest.mark.slow
def test_good_release_reaches_everyone_and_a_bad_one_is_rolled_back(fleet_server, tmp_path, cli):
    fleet_server.publish("kws", 1, scale=1.0)
    fleet_server.publish("kws", 2, scale=2.0, desired=False)
    fleet_server.publish("kws", 3, scale=3.0, desired=False)
    gates = ("error_rate<0.05",)

    def steps(client, sim):
        good = client.start(
            "kws",
            2,
            stages=(10, 50, 100),
            soak_s=2.0,
            gates=gates,
            min_devices=2,
            min_requests=30,
        )
        assert good["stage_devices"] == 2  # ceil(10% of 20)
        good = client.wait(good["id"], ("completed", "rolled_back"), timeout_s=60)
        deadline = time.monotonic() + 10
        while sim.serving() != {"kws@2": N} and time.monotonic() < deadline:
            time.sleep(0.1)
        serving_after_good = dict(sim.serving())
        installs = sum(a.telemetry.totals.get("installs", 0) for a in sim.agents)
        bad = client.start(
            "kws",
            3,
            stages=(50, 100),
            soak_s=30.0,
            gates=gates,
            min_devices=2,
            min_requests=30,
        )
        started = time.monotonic()
        failed = client.wait(bad["id"], ("failed", "rolled_back", "completed"), timeout_s=60)
        failed_after = time.monotonic() - started
        back = client.wait(bad["id"], ("rolled_back",), timeout_s=30)
        deadline = time.monotonic() + 10
        while sim.serving() != {"kws@2": N} and time.monotonic() < deadline:
            time.sleep(0.1)
        rollback_installs = (
            sum(a.telemetry.totals.get("installs", 0) for a in sim.agents) - installs
        )
        return (
            good,
            serving_after_good,
            failed,
            failed_after,
            back,
            dict(sim.serving()),
            rollback_installs,
        )

    sim, result, without_model = asyncio.run(_drive(fleet_server, tmp_path, steps))
    good, serving_good, failed, failed_after, back, serving_end, new_installs = result
    assert good["state"] == "completed", good["reason"]
    assert [e["kind"] for e in good["events"]] == [
        "start",
        "soak",
        "advance",
        "soak",
        "advance",
        "soak",
        "complete",
    ]
    assert serving_good == {"kws@2": N}
    assert failed["state"] in ("failed", "rolled_back") and "error_rate<0.05" in failed["reason"]
    assert failed_after < 30  # caught by the gate, long before the soak ends
    assert back["state"] == "rolled_back"
    assert serving_end == {"kws@2": N}  # every device of the stage is back on the previous one
    # the bad release was downloaded at most once by each stage device (the gate may fail the
    # stage before its last device has fetched it: with min_devices=2 it need not wait) ...
    assert 0 < new_installs <= N // 2
    switches = sum(a.telemetry.totals.get("switches", 0) for a in sim.agents)
    assert switches >= new_installs  # ... and left by switching slots, without a download
    assert without_model == set()  # never a device without a working model

    # the CLI shows the rollouts; the alias history has the rollback's revert of the canary
    out = cli("rollout", "--server", fleet_server.url, "--data", str(fleet_server.data), "list")
    assert out.returncode == 0, out.stderr
    assert "rolled_back" in out.stdout and "completed" in out.stdout
    out = cli(
        "rollout",
        "--server",
        fleet_server.url,
        "--data",
        str(fleet_server.data),
        "status",
        str(back["id"]),
        "--json",
    )
    assert out.returncode == 0 and '"gate_failed"' in out.stdout
    from edgeloop.registry import Registry

    with Registry(fleet_server.db_url, fleet_server.data) as reg:
        canary = reg.alias_history("kws", "canary")
        production = reg.alias_history("kws", "production")
    assert canary[-1].action == "revert" and "error_rate<0.05" in canary[-1].reason
    assert (production[-1].to_version, production[-1].actor) == (2, "rollout")


@pytest.mark.slow
def test_rollout_page_commands_run(fleet_server, cli):
    """The command block of docs/rollout.md, in order, against a real server."""
    import shlex
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "rollout.md"
    block = doc.read_text().split("<!-- rollout-example -->")[1].split("<!-- /rollout-example")[0]
    commands = [shlex.split(ln) for ln in block.splitlines() if ln.startswith("edgeloop ")]
    assert [c[2] for c in commands] == ["start", "status", "pause", "resume", "list", "abort"]
    fleet_server.publish("kws", 1, scale=1.0)
    fleet_server.publish("kws", 2, scale=2.0, desired=False)
    env = {"EDGELOOP_SERVER": fleet_server.url, "EDGELOOP_DATA": str(fleet_server.data)}
    outputs = []
    for args in commands:
        out = cli(*args[1:], env=env)
        assert out.returncode == 0, (args, out.stderr)
        outputs.append(out.stdout)
    assert "rollout 1: kws 1 -> 2" in outputs[0] and "running" in outputs[0]
    assert "timeline" in outputs[1]
    assert "paused" in outputs[2] and "looking at the dashboard" in outputs[2]
    assert "aborted" in outputs[5]
