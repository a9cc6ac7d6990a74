"""Fleet benchmark: one ``edgeloop server`` process on loopback, simulated agents in this one.

Measures, on SQLite and on PostgreSQL (a temporary local server):

* check-ins per second and their p50/p99 latency with N simulated agents (each a real agent:
  own keys and state dir, signed requests, telemetry), over a bounded window after a warm-up
  in which every agent enrolled and installed the current release;
* the time for M agents to install a new model of about 5 MB (publish -> every agent serving
  it), with the poll interval given;
* the peak RSS of one ``edgeloop agent`` process serving that model over its local HTTP
  endpoint.

Prints a table and writes ``benchmarks/results/fleet.json``. Everything stops by itself.

    python benchmarks/fleet.py                          # the full run (see docs/fleet.md)
    python benchmarks/fleet.py --devices 200 --install-devices 100 --dbs sqlite --window 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

SERVER = "import typer; from edgeloop.cli.server import server; typer.run(server)"
AGENT = "import typer; from edgeloop.cli.agent import agent; typer.run(agent)"
RESULTS = Path(__file__).parent / "results" / "fleet.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scaled_model(scale: float, n_weights: int = 0) -> bytes:
    """y = x * scale; ``n_weights`` float32 zeros make the file that much bigger."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([scale], dtype=np.float32), "s")]
    nodes = [helper.make_node("Mul", ["x", "s"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])]
    if n_weights:
        pad = np.random.default_rng(0).standard_normal(n_weights).astype(np.float32)
        inits.append(numpy_helper.from_array(pad, "pad"))
        nodes.append(helper.make_node("ReduceSum", ["pad"], ["pad_sum"], keepdims=1))
        outputs.append(helper.make_tensor_value_info("pad_sum", TensorProto.FLOAT, [1]))
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


# --- PostgreSQL (as the test suite's fixture does it) -----------------------------------------
@contextmanager
def postgres() -> Iterator[str]:
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        raise SystemExit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    bindir = bindirs[-1]
    root = Path(tempfile.mkdtemp(prefix="edgeloop-bench-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def pg(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, cwd=root, timeout=120)

    pg(
        str(bindir / "initdb"),
        "-D",
        str(root / "data"),
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-sync",
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    pg(
        str(bindir / "pg_ctl"),
        "-D",
        str(root / "data"),
        "-o",
        opts,
        "-l",
        str(root / "log"),
        "-w",
        "-t",
        "60",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


# --- the server ---------------------------------------------------------------------------------
class Server:
    def __init__(self, db_url: str, tmp: Path, poll_interval: float) -> None:
        self.db_url, self.tmp, self.data = db_url, tmp, tmp / "data"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER,
                "--db",
                db_url,
                "--data",
                str(self.data),
                "--port",
                str(self.port),
                "--poll-interval",
                str(poll_interval),
                "--create-release-keys",  # a trial server: the benchmark packs on its keys
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit((tmp / "server.log").read_text()[-3000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise SystemExit("the fleet server did not start in 90 s")
        self.admin_token = (self.data / "admin-token").read_text().strip()
        self.admin = {"Authorization": f"Bearer {self.admin_token}"}

    def publish(self, model: str, version: int, n_weights: int = 0) -> int:
        from edgeloop.artifacts import ModelCard
        from edgeloop.bundle import load_public_key, load_signing_key, pack
        from edgeloop.registry import Registry

        keys = self.data / "keys"
        onnx = scaled_model(float(version), n_weights)
        bundle = pack(
            onnx,
            ModelCard(name=model, sha256=""),
            version,
            load_signing_key(keys / "release.pem"),
            [load_public_key(keys / "fleet.pub.pem")],
            name=model,
        )
        path, src = self.tmp / f"{model}-{version}.elb", self.tmp / f"{model}-{version}.onnx"
        path.write_bytes(bundle)
        src.write_bytes(onnx)
        with Registry(self.db_url, self.data) as reg:
            reg.push(src, model, version=version, bundles=[(path, "fp32", {})])
        r = httpx.post(
            self.url + "/v1/admin/releases",
            json={"model": model, "version": version},
            headers=self.admin,
            timeout=120,
        )
        r.raise_for_status()
        return len(bundle)

    def desire(self, model: str, version: int) -> None:
        r = httpx.put(
            self.url + f"/v1/admin/models/{model}/desired",
            json={"version": version},
            headers=self.admin,
            timeout=60,
        )
        r.raise_for_status()

    def rss_mb(self) -> float:
        import psutil

        return float(psutil.Process(self.proc.pid).memory_info().rss / 2**20)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --- the measurements ---------------------------------------------------------------------------
async def _simulator(srv: Server, root: Path, n: int, poll_interval: float, rps: float) -> Any:
    from edgeloop.agent import Simulator, simulated_profiles
    from edgeloop.client import AdminClient, create_tokens

    tokens = await create_tokens(srv.url, srv.admin_token, n, model="bench")
    image = AdminClient(srv.url, srv.admin_token).provision(model="bench")  # provisioned trust
    return Simulator(
        srv.url,
        root,
        tokens,
        simulated_profiles("mix", n),
        poll_interval_s=poll_interval,
        rps=rps,
        workers=8,
        provisioning=image,
    )


async def fleet_run(
    srv: Server, root: Path, n: int, args: argparse.Namespace, install_version: int | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Warm up (enroll, install the current release; bounded by ``--warm-timeout``), measure
    check-ins over ``--window`` seconds, then optionally publish a ~5 MB release and time how
    long until every warm agent serves it."""
    poll = args.server_poll  # the server's answer sets every agent's interval
    t0 = time.monotonic()
    sim = await _simulator(srv, root, n, poll_interval=poll, rps=args.rps)
    setup_s = time.monotonic() - t0
    install_row = None
    try:
        t1 = time.monotonic()
        # bounded: measured with however many devices made it (reported as "enrolled")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sim.warm_up(), timeout=args.warm_timeout)
        warm_s = time.monotonic() - t1
        enrolled = sum(a.identity is not None for a in sim.agents)
        sim.reset_stats()
        result = await sim.run(args.window)
        if install_version is not None:
            size = srv.publish("bench", install_version, n_weights=5 * 2**20 // 4)
            want = f"bench@{install_version}"
            live = sum(a.model is not None for a in sim.agents)
            t2 = time.monotonic()
            srv.desire("bench", install_version)
            done = await sim.run(
                args.install_timeout, until=lambda: sim.serving().get(want, 0) >= live
            )
            took = time.monotonic() - t2
            got = done.serving.get(want, 0)
            install_row = {
                "devices": live,
                "bundle_mb": round(size / 2**20, 2),
                "poll_interval_s": args.server_poll,
                "all_installed_s": round(took, 1) if got >= live else None,
                "installed": got,
                "after_s": round(took, 1),
                "model_loads_in_process": done.loads,
            }
    finally:
        await sim.aclose()
    c = result.requests.get("/v1/checkin", {})
    t = result.requests.get("/v1/telemetry", {})
    row = {
        "devices": n,
        "enrolled": enrolled,
        "window_s": round(result.duration_s, 1),
        "poll_interval_s": poll,
        "setup_s": round(setup_s, 1),
        "warm_up_s": round(warm_s, 1),
        "serving": result.serving,
        "checkins_per_s": round(c.get("rate_per_s", 0.0), 1),
        "checkin_p50_ms": round(c.get("p50_ms", float("nan")), 1),
        "checkin_p99_ms": round(c.get("p99_ms", float("nan")), 1),
        "checkin_errors": int(c.get("errors", 0)),
        "telemetry_per_s": round(t.get("rate_per_s", 0.0), 1),
        "telemetry_p99_ms": round(t.get("p99_ms", float("nan")), 1),
        "poll_failures": result.poll_failures,
        "inferences": result.inferences,
        "server_rss_mb": round(srv.rss_mb(), 1),
    }
    return row, install_row


def agent_rss(srv: Server, tmp: Path, version: int, requests: int = 300) -> dict[str, Any]:
    """Peak RSS of one `edgeloop agent` process serving the current release over HTTP."""
    import psutil

    r = httpx.post(srv.url + "/v1/admin/tokens", json={"model": "bench"}, headers=srv.admin)
    token = r.json()["token"]
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            AGENT,
            "--server",
            srv.url,
            "--state",
            str(tmp / "one-agent"),
            "--enroll-token",
            token,
            "--serve-port",
            str(port),
            "--profile",
            "rpi4",
            "--poll-interval",
            "1",
            "--duration",
            "120",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    peak, served, lat = 0.0, None, []
    try:
        deadline = time.monotonic() + 110
        while time.monotonic() < deadline:
            try:
                st = httpx.get(url + "/v1/status", timeout=2).json()
                if st.get("version") == version:
                    served = st["version"]
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        x = {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}
        with httpx.Client(timeout=10) as http:
            for _ in range(requests):
                t0 = time.perf_counter()
                http.post(url + "/v1/predict", json=x).raise_for_status()
                lat.append((time.perf_counter() - t0) * 1e3)
        status = (Path("/proc") / str(proc.pid) / "status").read_text()
        peak = next(
            int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")
        )
        rss_now = psutil.Process(proc.pid).memory_info().rss / 2**20
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "version_served": served,
        "peak_rss_mb": round(peak, 1),
        "rss_after_requests_mb": round(rss_now, 1),
        "http_requests": requests,
        "http_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "http_p99_ms": round(float(np.percentile(lat, 99)), 2),
        "goal_mb": 150,
    }


def run_db(db: str, db_url: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"edgeloop-bench-{db}-"))
    srv = Server(db_url, tmp, poll_interval=args.server_poll)
    version = 1
    try:
        srv.publish("bench", version)
        srv.desire("bench", version)
        for n in args.pg_devices if db == "postgresql" else args.devices:
            do_install = n == args.install_devices
            print(f"[{db}] {n} agents{' + 5 MB install' if do_install else ''} ...", flush=True)
            row, inst = asyncio.run(
                fleet_run(srv, tmp / f"sim-{n}", n, args, version + 1 if do_install else None)
            )
            out["checkins"].append({"db": db, **row})
            print(json.dumps(row), flush=True)
            if inst is not None:
                version += 1
                out["install"].append({"db": db, **inst})
                print(json.dumps(inst), flush=True)
                if args.rss and not out.get("agent_rss"):
                    out["agent_rss"] = {"db": db, **agent_rss(srv, tmp, version)}
                    print(json.dumps(out["agent_rss"]), flush=True)
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def table(out: dict[str, Any]) -> str:
    lines = [
        "| db | agents | enrolled | window s | check-ins/s | p50 ms | p99 ms | errors "
        "| telemetry/s | server RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in out["checkins"]:
        lines.append(
            f"| {r['db']} | {r['devices']} | {r['enrolled']} | {r['window_s']}"
            f" | {r['checkins_per_s']} | {r['checkin_p50_ms']}"
            f" | {r['checkin_p99_ms']} | {r['checkin_errors']} | {r['telemetry_per_s']}"
            f" | {r['server_rss_mb']} |"
        )
    lines += [
        "",
        "| db | agents | bundle MB | poll s | all installed after s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in out["install"]:
        lines.append(
            f"| {r['db']} | {r['devices']} | {r['bundle_mb']} | {r['poll_interval_s']}"
            f" | {r['all_installed_s']} ({r['installed']}/{r['devices']} after {r['after_s']} s) |"
        )
    if out.get("agent_rss"):
        a = out["agent_rss"]
        lines += [
            "",
            f"one agent process serving v{a['version_served']}: peak RSS "
            f"{a['peak_rss_mb']} MB (goal <= {a['goal_mb']} MB); local HTTP p50 "
            f"{a['http_p50_ms']} ms, p99 {a['http_p99_ms']} ms",
        ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="1000,10000", help="comma-separated agent counts")
    p.add_argument("--pg-devices", default=None, help="agent counts on PostgreSQL (default: same)")
    p.add_argument("--window", type=float, default=30.0, help="measured seconds per count")
    p.add_argument("--rps", type=float, default=0.05, help="inferences/s per simulated device")
    p.add_argument(
        "--install-devices",
        type=int,
        default=1000,
        help="the agent count whose run also times a 5 MB install",
    )
    p.add_argument(
        "--warm-timeout",
        type=float,
        default=300.0,
        help="cap on the warm-up (enroll + first install) per count",
    )
    p.add_argument(
        "--server-poll",
        type=float,
        default=1.0,
        help="the server's --poll-interval (every agent polls at this pace)",
    )
    p.add_argument("--install-timeout", type=float, default=600.0)
    p.add_argument("--dbs", default="sqlite,postgresql")
    p.add_argument("--no-rss", dest="rss", action="store_false")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    args.devices = [int(x) for x in args.devices.split(",") if x]
    pg = args.pg_devices
    args.pg_devices = [int(x) for x in pg.split(",") if x] if pg else args.devices
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "checkins": [],
        "install": [],
    }
    started = time.monotonic()
    for db in args.dbs.split(","):
        if db == "sqlite":
            run_db(
                db, f"sqlite:///{tempfile.mkdtemp(prefix='edgeloop-bench-db-')}/fleet.db", args, out
            )
        elif db == "postgresql":
            with postgres() as url:
                run_db(db, url, args, out)
        else:
            raise SystemExit(f"unknown db {db!r}; expected sqlite or postgresql")
    out["total_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
