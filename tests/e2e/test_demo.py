"""`edgeloop demo` (the README's main job) runs the loop end to end on embedded defaults.

The demo runs once per session (it trains, serves and rolls out for minutes); each test reads
what it printed and wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _live import ChildServer, fleet_ready
from edgeloop.demo import NEXT_PORT

pytestmark = pytest.mark.slow

DEVICES = 5


@dataclass
class Demo:
    work: Path
    proc: subprocess.CompletedProcess[str]
    result: dict[str, Any]

    def step(self, name: str) -> dict[str, Any]:
        return next(s for s in self.result["steps"] if s["name"] == name)


def _edgeloop(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "edgeloop", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        **kw,
    )


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Demo:
    """The demo, run once for the whole session, whichever pytest-xdist workers ask for it.

    Workers share the parent of their temp dirs; the first to take the lock runs the demo and
    keeps its output there, the others read it (pytest-xdist's "run a session fixture once"
    recipe, with fcntl's lock: ``--dist loadgroup`` cannot keep these tests on one worker, as
    xdist 3.8 fails to tag the groups under pytest 9.2).
    """
    import fcntl

    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent
    work, done = root / "demo-once" / "demo", root / "demo-once" / "done.json"
    with open(root / "demo-once.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            work.parent.mkdir(parents=True, exist_ok=True)
            args = ["demo", "--workdir", str(work), "--epochs", "3", "--devices", str(DEVICES),
                    "--no-closed-loop"]  # the closed loop has its own test (test_closed_loop)
            proc = _edgeloop(args, cwd=work.parent)
            out = {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
            done.write_text(json.dumps(out))
    out = json.loads(done.read_text())
    proc = subprocess.CompletedProcess(["edgeloop", "demo"], **out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Demo(work, proc, json.loads((work / "demo.json").read_text()))


def test_demo_runs_the_loop_and_the_fleet_serves(demo: Demo) -> None:
    steps = {s["name"]: s for s in demo.result["steps"]}
    assert list(steps)[:5] == ["profile", "train", "export", "optimize", "benchmark"]
    assert steps["train"]["figures"]["accuracy"] > 0.9
    fleet = steps["fleet"]["figures"]
    assert fleet["serving"] == {"digits-cnn@1": DEVICES}
    assert steps["rollout"]["figures"]["state"] == "completed"
    assert steps["rollback"]["figures"]["state"] == "rolled_back"
    assert "failed" in steps["rollback"]["figures"]["events"]
    # after the automatic rollback every device serves the good v2 again
    assert steps["telemetry"]["figures"]["serving"] == {"digits-cnn@2": DEVICES}
    # the mix of simulated hardware gets both variants: int8 where dot-product ISA exists
    assert "fp32" in fleet["variants"] and any(v.startswith("int8") for v in fleet["variants"])
    assert (demo.work / "int8" / "report.html").exists()
    assert demo.result["steps"][-1]["name"] == "telemetry"


def test_the_bad_v3_is_said_to_be_injected_by_the_simulator(demo: Demo) -> None:
    rollback = demo.step("rollback")
    telemetry = demo.step("telemetry")

    assert rollback["figures"]["injected"] == {"by": "simulator", "error_share": 0.3}
    assert "the simulator injects failures into 30% of its inferences" in rollback["summary"]
    assert "Rolled out" in rollback["summary"] and "rolled back" in rollback["summary"]
    assert "the failures the simulator injected into v3" in telemetry["summary"]
    assert "simulator injects failures" in demo.proc.stderr  # said as the step ends


def test_each_simulated_target_gets_the_variant_its_isa_allows(demo: Demo) -> None:
    from edgeloop.artifacts import DeviceProfile

    fleet = demo.step("fleet")
    targets = fleet["figures"]["targets"]
    host = DeviceProfile.load(demo.work / "profile.json")

    expected = {"asimddp": "int8-armdot", "avx_vnni": "int8-avxvnni"}
    expected["avx512_vnni"] = "int8-avx512vnni"
    assert sum(t["devices"] for t in targets.values()) == DEVICES
    for name, t in targets.items():
        want = expected[t["isa"][0]] if t["isa"] else "fp32"
        assert t["variants"] == {want: t["devices"]}, name
    host_isa = {f.lower() for f in host.isa}
    fitting = sorted(v for isa, v in expected.items() if isa in host_isa)  # ties go by name
    host_want = fitting[0] if fitting else "fp32"
    assert fleet["figures"]["this_host"]["variant"] == host_want
    assert "built-in target profile, not this host's CPU" in fleet["summary"]
    assert (
        f"this host ({', '.join(fleet['figures']['this_host']['isa']) or 'no 8-bit'}"
        in (fleet["summary"])
    )


def test_demo_json_lists_each_bundle_once(demo: Demo) -> None:
    bundles = demo.step("bundle")["figures"]["bundles"]

    files = [b["file"] for b in bundles]
    assert len(files) == len(set(files)) == 2
    assert {b["kind"] for b in bundles} == {"fp32", "int8"}
    variants = [v for b in bundles for v in b["variants"]]
    assert sorted(variants) == ["fp32", "int8-armdot", "int8-avx512vnni", "int8-avxvnni"]
    assert all(Path(f).is_file() for f in files)


def _on_port(argv: list[str], port: int) -> list[str]:
    """A printed command with the test's port in place of the documented one."""
    return [a.replace(f"127.0.0.1:{NEXT_PORT}", f"127.0.0.1:{port}") for a in argv]


@pytest.fixture
def served_again(demo: Demo, tmp_path: Path) -> Iterator[ChildServer]:
    """The demo's own "serve it again" command, on a free port instead of 8700."""
    argv = demo.result["next"]["server"]
    assert argv[:2] == ["edgeloop", "server"] and argv[-2] == "--port"

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "edgeloop", *argv[1:-1], str(port)]

    token = Path(demo.result["next"]["admin_token"])
    server = ChildServer(command, tmp_path / "server.log", fleet_ready(token))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_demo_ends_with_the_dashboard_and_commands_that_run(
    demo: Demo, served_again: ChildServer
) -> None:
    nxt = demo.result["next"]
    printed = demo.proc.stdout.rstrip().splitlines()
    dashboard = nxt["dashboard"].replace(str(NEXT_PORT), str(served_again.port))
    token = Path(nxt["admin_token"]).read_text().strip()

    assert nxt["dashboard"] == f"http://127.0.0.1:{NEXT_PORT}/dashboard"
    assert Path(nxt["admin_token"]) == demo.work / "fleet" / "admin-token"
    assert any(nxt["dashboard"] in line and nxt["admin_token"] in line for line in printed)
    assert printed[-1].strip().startswith("edgeloop bench")  # the commands end the output
    with httpx.Client(base_url=dashboard.removesuffix("/dashboard")) as web:
        signed_in = web.post("/dashboard/login", data={"token": token})
        page = web.get("/dashboard")
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboard"
    assert page.status_code == 200 and "digits-cnn" in page.text
    outputs = []
    for argv in nxt["commands"]:
        assert argv[0] == "edgeloop"
        r = _edgeloop(_on_port(argv[1:], served_again.port))
        assert r.returncode == 0, (argv, r.stdout, r.stderr)
        outputs.append(r.stdout)
    devices, rollouts, status, lineage, _ = outputs
    assert devices.count("digits-cnn") >= DEVICES
    assert "rolled_back" in rollouts and "rolled_back" in status
    assert "digits-cnn@2" in lineage


def test_demo_refuses_a_folder_that_is_not_its_own(cli, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    r = cli("demo", "--workdir", str(tmp_path))
    assert r.returncode == 10
    assert "is not an earlier demo's folder" in r.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
