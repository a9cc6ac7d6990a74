"""Fleet benchmark: one ``edgeloop server`` process on loopback, simulated agents in this one.

Measures, on SQLite and on PostgreSQL (a temporary local server):

* check-ins per second and their p50/p99 latency with N simulated agents (each a real agent:
  own keys and state dir, signed requests, telemetry), over a bounded window after a warm-up
  in which every agent enrolled and installed the current release;
* the time for M agents to install a new model of about 5 MB (publish -> every agent serving
  it), with the poll interval given;
* the peak RSS of one ``edgeloop agent`` process serving that model over its local HTTP
  endpoint;
* the server's CPU per check-in: user + system time of the server process (and its workers)
  from ``/proc`` over the window, divided by the check-ins it answered (a figure that holds on
  a shared machine), with 1 and 2 server processes (``--workers``) on PostgreSQL;
* the database's commits per check-in (PostgreSQL's ``pg_stat_database``), the bytes a device
  sends and receives per poll (bodies and headers) and so per day;
* with ``--tls``: the server on HTTPS, and the TLS handshake's cost apart: server CPU per
  check-in with a new connection per check-in against one kept alive.

The agents run in the simulator's light mode (one copy of each bundle on disk, one inference
session per bundle; docs/scale.md). Prints a table and writes ``benchmarks/results/fleet.json``
(``runs``: one entry per configuration with ``devices``, ``db``, ``workers``,
``checkins_per_s``, ``server_cpu_ms_per_checkin``, ``p50_ms``, ``p99_ms``). Everything stops
by itself.

    python benchmarks/fleet.py --plan                   # the configurations and their runtime
    python benchmarks/fleet.py                          # the full run (see docs/scale.md)
    python benchmarks/fleet.py --devices 200 --install-devices 100 --dbs sqlite --window 10
    python benchmarks/fleet.py --fleet-dir DIR --devices 10000 --dbs sqlite   # kept fleet

With ``--fleet-dir`` the SQLite fleet (server data, database, TLS files, every agent's state)
stays in DIR and the next run starts from it: agents enrolled before only poll in the warm-up
(docs/scale.md, "A kept fleet").

Each configuration (db, server processes, agents) ends within ``--budget`` seconds (150 by
default): the warm-up is cut to fit, and the row says how many agents enrolled.
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
def tls_files(tmp: Path) -> tuple[Path, Path, bytes]:
    """A throwaway CA and a server certificate for 127.0.0.1: (cert, key, CA PEM); the ones
    already in ``tmp`` when a kept fleet (``--fleet-dir``) made them before: its agents were
    provisioned with that CA."""
    cert_path, key_path, ca_path = tmp / "server.crt", tmp / "server.key", tmp / "ca.pem"
    if cert_path.exists() and key_path.exists() and ca_path.exists():
        return cert_path, key_path, ca_path.read_bytes()
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, ca_path.read_bytes()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live children (uvicorn's workers)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


class Server:
    def __init__(
        self, db_url: str, tmp: Path, poll_interval: float, workers: int = 1, tls: bool = False
    ) -> None:
        self.db_url, self.tmp, self.data = db_url, tmp, tmp / "data"
        self.port = _free_port()
        self.ca_pem: bytes | None = None
        extra: list[str] = ["--workers", str(workers)]
        if tls:
            cert, key, self.ca_pem = tls_files(tmp)
            extra += ["--tls-cert", str(cert), "--tls-key", str(key)]
        self.verify: Any = True
        if self.ca_pem is not None:
            import ssl

            self.verify = ssl.create_default_context(cadata=self.ca_pem.decode())
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
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
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit((tmp / "server.log").read_text()[-3000:])
            try:
                ok = httpx.get(self.url + "/healthz", timeout=1, verify=self.verify)
                if ok.status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise SystemExit("the fleet server did not start in 180 s")
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
            verify=self.verify,
        )
        r.raise_for_status()
        return len(bundle)

    def desire(self, model: str, version: int) -> None:
        r = httpx.put(
            self.url + f"/v1/admin/models/{model}/desired",
            json={"version": version},
            headers=self.admin,
            timeout=60,
            verify=self.verify,
        )
        r.raise_for_status()

    def cpu_s(self) -> float:
        return _cpu_s(self.proc.pid)

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
async def _simulator(
    srv: Server, root: Path, n: int, poll_interval: float, rps: float, model: str = "bench"
) -> Any:
    from edgeloop.agent import Simulator, simulated_profiles
    from edgeloop.client import AdminClient, create_tokens

    # agents of a kept fleet (--fleet-dir) that enrolled before load their identity from
    # their state dir and never spend the token
    tokens = await create_tokens(srv.url, srv.admin_token, n, model=model, verify=srv.verify)
    ca = srv.ca_pem.decode() if srv.ca_pem else None
    image = AdminClient(srv.url, srv.admin_token, verify=srv.verify).provision(
        model=model, ca_pem=ca
    )  # provisioned trust, the CA pinned when on TLS
    return Simulator(
        srv.url,
        root,
        tokens,
        simulated_profiles("mix", n),
        poll_interval_s=poll_interval,
        rps=rps,
        workers=8,
        provisioning=image,
        light=True,  # one copy of each bundle on disk, one session per bundle (docs/scale.md)
    )


def _pg_commits(db_url: str) -> int | None:
    """Transactions committed in the database so far (PostgreSQL); None on SQLite."""
    if not db_url.startswith("postgresql"):
        return None
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as c:
            sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            value = c.execute(sa.text(sql)).scalar()
        return int(value or 0)
    finally:
        engine.dispose()


async def fleet_run(
    srv: Server,
    root: Path,
    n: int,
    args: argparse.Namespace,
    install_version: int | None,
    model: str = "bench",
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Warm up (enroll, install the current release; bounded by ``--warm-timeout``), measure
    check-ins over ``--window`` seconds, then optionally publish a ~5 MB release and time how
    long until every warm agent serves it."""
    poll = args.server_poll  # the server's answer sets every agent's interval
    t0 = time.monotonic()
    # the configuration's budget: the warm-up gets what the window, the install and the
    # teardown do not need, so the configuration ends within --budget seconds
    deadline = t0 + args.budget
    reserve = args.window + _TEARDOWN_S + (_INSTALL_RESERVE_S if install_version else 0.0)
    kept = _enrolled(root)  # agents of a kept fleet (--fleet-dir) enrolled by an earlier run
    sim = await _simulator(srv, root, n, poll_interval=poll, rps=args.rps, model=model)
    setup_s = time.monotonic() - t0
    install_row = None
    try:
        t1 = time.monotonic()
        warm_timeout = min(args.warm_timeout, max(5.0, deadline - t1 - reserve))
        # bounded: measured with however many devices made it (reported as "enrolled")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sim.warm_up(), timeout=warm_timeout)
        warm_s = time.monotonic() - t1
        enrolled = sum(a.identity is not None for a in sim.agents)
        sim.reset_stats()
        commits0, cpu0 = _pg_commits(srv.db_url), srv.cpu_s()
        result = await sim.run(args.window)
        cpu_s = srv.cpu_s() - cpu0
        commits1 = _pg_commits(srv.db_url)
        if install_version is not None:
            size = srv.publish(model, install_version, n_weights=5 * 2**20 // 4)
            want = f"{model}@{install_version}"
            live = sum(a.model is not None for a in sim.agents)
            t2 = time.monotonic()
            srv.desire(model, install_version)
            left = max(5.0, deadline - time.monotonic() - _TEARDOWN_S)
            done = await sim.run(
                min(args.install_timeout, left),
                until=lambda: sim.serving().get(want, 0) >= live,
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
    checkins = max(int(c.get("count", 0)), 1)
    poll_bytes = c.get("bytes_per_request", 0.0) + t.get("bytes_per_request", 0.0)
    row = {
        "devices": n,
        "workers": args.current_workers,
        "tls": args.tls,
        "p50_ms": round(c.get("p50_ms", float("nan")), 1),
        "p99_ms": round(c.get("p99_ms", float("nan")), 1),
        # the server's CPU (all its processes) over the window, per check-in answered; the
        # window's telemetry reports (one per poll) are in it too
        "server_cpu_ms_per_checkin": round(cpu_s * 1e3 / checkins, 3),
        "server_cpu_s": round(cpu_s, 2),
        "db_commits_per_checkin": (
            round((commits1 - commits0) / checkins, 3)
            if commits0 is not None and commits1 is not None
            else None
        ),
        "bytes_per_poll": round(poll_bytes, 1),
        "bytes_per_device_per_day": round(86400.0 / poll * poll_bytes),
        "bytes_per_device_per_day_at_60s": round(86400.0 / 60.0 * poll_bytes),
        "enrolled": enrolled,
        "enrolled_before": kept,  # by an earlier run of a kept fleet (--fleet-dir)
        "window_s": round(result.duration_s, 1),
        "poll_interval_s": poll,
        "setup_s": round(setup_s, 1),
        "warm_up_s": round(warm_s, 1),
        "warm_up_capped": enrolled < n or warm_s >= warm_timeout,
        "budget_s": args.budget,
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


def _enrolled(root: Path) -> int:
    """Agents under a simulator's state root that hold an identity (enrolled)."""
    return sum(1 for _ in root.glob("device-*/identity.json")) if root.is_dir() else 0


def agent_rss(
    srv: Server, tmp: Path, version: int, requests: int = 300, model: str = "bench"
) -> dict[str, Any]:
    """Peak RSS of one `edgeloop agent` process serving the current release over HTTP."""
    import psutil

    r = httpx.post(srv.url + "/v1/admin/tokens", json={"model": model}, headers=srv.admin)
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


def handshake_cost(srv: Server, n: int, model: str = "bench") -> dict[str, Any]:
    """Server CPU per signed check-in from one device: ``n`` on one kept-alive connection,
    then ``n`` each on a new connection (a TLS handshake each when the server is on TLS)."""
    from edgeloop.bundle import generate_encryption_key, generate_signing_key
    from edgeloop.hardware import load_target
    from edgeloop.protocol import ENROLL_DEVICE_ID, public_hex, sign_request

    r = httpx.post(
        srv.url + "/v1/admin/tokens", json={"model": model}, headers=srv.admin,
        verify=srv.verify,
    )  # fmt: skip
    r.raise_for_status()
    key = generate_signing_key()
    body = json.dumps(
        {
            "token": r.json()["token"],
            "signing_key": public_hex(key),
            "encryption_key": public_hex(generate_encryption_key()),
            "profile": load_target("rpi4").to_dict(),
            "agent_version": "0.1.0",
        }
    ).encode()
    headers = sign_request(key, ENROLL_DEVICE_ID, "POST", "/v1/enroll", body)
    r = httpx.post(srv.url + "/v1/enroll", content=body, headers=headers, verify=srv.verify)
    r.raise_for_status()
    device = r.json()["device_id"]

    def one(client: httpx.Client) -> None:
        data = json.dumps({"agent_version": "0.1.0", "health": "ok"}).encode()
        h = sign_request(key, device, "POST", "/v1/checkin", data)
        client.post(srv.url + "/v1/checkin", content=data, headers=h).raise_for_status()

    out: dict[str, Any] = {"tls": srv.ca_pem is not None, "checkins": n}
    with httpx.Client(verify=srv.verify, timeout=30) as client:
        one(client)
        cpu0 = srv.cpu_s()
        for _ in range(n):
            one(client)
        out["kept_alive_cpu_ms_per_checkin"] = round((srv.cpu_s() - cpu0) * 1e3 / n, 3)
    cpu0 = srv.cpu_s()
    for _ in range(n):
        with httpx.Client(verify=srv.verify, timeout=30) as client:
            one(client)
    out["new_connection_cpu_ms_per_checkin"] = round((srv.cpu_s() - cpu0) * 1e3 / n, 3)
    out["connection_cost_ms"] = round(
        out["new_connection_cpu_ms_per_checkin"] - out["kept_alive_cpu_ms_per_checkin"], 3
    )
    return out


def run_db(
    db: str,
    db_url: str,
    args: argparse.Namespace,
    out: dict[str, Any],
    workers: int,
    keep: Path | None = None,
) -> None:
    """One database's configurations on one server. ``keep`` (``--fleet-dir``, SQLite): the
    server's data dir, its database, TLS files and every agent count's simulator state live
    there and stay: a later run starts the server on them and its agents are enrolled and
    serving already, so its warm-up is one check-in per agent. Each agent count then has a
    model of its own (``bench-N``), so the 5 MB install at one count never moves another."""
    tmp = keep or Path(tempfile.mkdtemp(prefix=f"edgeloop-bench-{db}-"))
    srv = Server(db_url, tmp, poll_interval=args.server_poll, workers=workers, tls=args.tls)
    args.current_workers = workers
    versions_file = tmp / "versions.json"
    versions: dict[str, int] = (
        json.loads(versions_file.read_text()) if keep and versions_file.exists() else {}
    )

    def published(model: str) -> int:
        if model not in versions:
            srv.publish(model, 1)
            srv.desire(model, 1)
            versions[model] = 1
            if keep:
                versions_file.write_text(json.dumps(versions))
        return versions[model]

    counts = args.pg_devices if db == "postgresql" else args.devices
    first = f"bench-{counts[0]}" if keep else "bench"
    try:
        published(first)
        for n in counts:
            model = f"bench-{n}" if keep else "bench"
            version = published(model)
            do_install = n == args.install_devices and workers == 1
            kept = f" (kept fleet: {_enrolled(tmp / f'sim-{n}')} enrolled)" if keep else ""
            print(
                f"[{db}, {workers} process(es)] {n} agents"
                f"{' + 5 MB install' if do_install else ''}{kept} ...",
                flush=True,
            )
            row, inst = asyncio.run(
                fleet_run(
                    srv, tmp / f"sim-{n}", n, args, version + 1 if do_install else None, model
                )
            )
            out["checkins"].append({"db": db, **row})
            out["runs"].append(
                {k: row[k] for k in RUN_KEYS if k in row} | {"db": db}
            )
            print(json.dumps(row), flush=True)
            if inst is not None:
                versions[model] = version + 1
                if keep:
                    versions_file.write_text(json.dumps(versions))
                out["install"].append({"db": db, **inst})
                print(json.dumps(inst), flush=True)
                if args.rss and not args.tls and not out.get("agent_rss"):
                    rss = agent_rss(srv, tmp, versions[model], model=model)
                    out["agent_rss"] = {"db": db, **rss}
                    print(json.dumps(out["agent_rss"]), flush=True)
        if args.handshake and workers == 1:
            cost = {"db": db, **handshake_cost(srv, args.handshake, first)}
            out["connection_cost"].append(cost)
            print(json.dumps(cost), flush=True)
    finally:
        srv.stop()
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


RUN_KEYS = (
    "devices", "workers", "tls", "checkins_per_s", "server_cpu_ms_per_checkin", "p50_ms",
    "p99_ms", "db_commits_per_checkin", "bytes_per_poll", "bytes_per_device_per_day",
    "bytes_per_device_per_day_at_60s",
    "enrolled", "checkin_errors",
)  # fmt: skip


_TEARDOWN_S = 15.0  # closing the simulator's agents and clients
_INSTALL_RESERVE_S = 45.0  # the 5 MB install's share of its configuration's budget
_SERVER_START_S = 10.0  # one `edgeloop server` start (and a PostgreSQL database made)
_PG_START_S = 10.0  # initdb and start of the temporary PostgreSQL server
_EXTRAS_S = 40.0  # per database: the connection cost (--handshake) and one agent's RSS


def configurations(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(db, server processes, agents) in the order the run takes them."""
    out: list[tuple[str, int, int]] = []
    for db in args.dbs.split(","):
        workers = [1] if db == "sqlite" else [int(x) for x in args.pg_workers.split(",") if x]
        counts = args.pg_devices if db == "postgresql" else args.devices
        out += [(db, w, n) for w in workers for n in counts]
    return out


def plan(args: argparse.Namespace) -> tuple[str, float]:
    """What the run will do and an upper bound of its wall time (each configuration ends
    within ``--budget``; the warm-up is cut there, and the row says how many enrolled)."""
    configs = configurations(args)
    lines = [f"{'db':<11} {'processes':>9} {'agents':>7}  budget (s)  expected (s)"]
    total = 0.0
    dbs = set()
    for db, w, n in configs:
        install = n == args.install_devices and w == 1
        warm = n / args.plan_enroll_rate
        need = 5.0 + warm + args.window + _TEARDOWN_S + (_INSTALL_RESERVE_S if install else 0.0)
        expected = min(args.budget, need)
        total += expected
        flag = " (warm-up capped)" if need > args.budget else ""
        lines.append(
            f"{db:<11} {w:>9} {n:>7}  {args.budget:>10.0f}  {expected:>12.0f}"
            f"{' + 5 MB install' if install else ''}{flag}"
        )
        dbs.add((db, w))
    fixed = _SERVER_START_S * len(dbs) + _EXTRAS_S * len({d for d, _ in dbs})
    fixed += _PG_START_S if any(d == "postgresql" for d, _ in dbs) else 0.0
    total += fixed
    upper = args.budget * len(configs) + fixed
    lines.append(
        f"server starts and extras: {fixed:.0f} s; expected total {total / 60:.1f} min, "
        f"at most {upper / 60:.1f} min (enrollment estimated at {args.plan_enroll_rate:g} "
        "agents/s: --plan-enroll-rate)"
    )
    return "\n".join(lines), upper


def _fresh_pg(url: str, name: str) -> str:
    """A new database ``name`` on the benchmark's PostgreSQL server (one per configuration)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def table(out: dict[str, Any]) -> str:
    lines = [
        "| db | processes | agents | enrolled | window s | check-ins/s | server CPU ms/check-in "
        "| p50 ms | p99 ms | errors | telemetry/s | DB commits/check-in | bytes/device/day "
        "| server RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for r in out["checkins"]:
        lines.append(
            f"| {r['db']} | {r['workers']} | {r['devices']} | {r['enrolled']} | {r['window_s']}"
            f" | {r['checkins_per_s']} | {r['server_cpu_ms_per_checkin']}"
            f" | {r['checkin_p50_ms']} | {r['checkin_p99_ms']} | {r['checkin_errors']}"
            f" | {r['telemetry_per_s']} | {r['db_commits_per_checkin']}"
            f" | {r['bytes_per_device_per_day']} | {r['server_rss_mb']} |"
        )
    for c in out.get("connection_cost", []):
        lines += [
            "",
            f"{c['db']}, {'TLS' if c['tls'] else 'plain HTTP'}: server CPU per check-in "
            f"{c['kept_alive_cpu_ms_per_checkin']} ms on a kept-alive connection, "
            f"{c['new_connection_cpu_ms_per_checkin']} ms with a new connection each "
            f"(the connection{' and its TLS handshake' if c['tls'] else ''}: "
            f"{c['connection_cost_ms']} ms)",
        ]
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
    p.add_argument(
        "--pg-workers", default="1,2", help="server processes to measure on PostgreSQL"
    )
    p.add_argument("--tls", action="store_true", help="the server on HTTPS (a throwaway CA)")
    p.add_argument(
        "--handshake",
        type=int,
        default=300,
        help="check-ins for the connection-cost measurement (0: skip)",
    )
    p.add_argument("--no-rss", dest="rss", action="store_false")
    p.add_argument(
        "--budget",
        type=float,
        default=150.0,
        help="seconds one configuration (db, processes, agents) may take in all; the warm-up "
        "is cut to fit, and its row says how many agents enrolled",
    )
    p.add_argument("--plan", action="store_true", help="print the configurations and the "
                   "expected and maximum runtime, then exit")  # fmt: skip
    p.add_argument(
        "--plan-enroll-rate",
        type=float,
        default=60.0,
        help="agents enrolled and installed per second, for --plan's expected time",
    )
    p.add_argument(
        "--fleet-dir",
        type=Path,
        default=None,
        help="keep the SQLite fleet here (server data, database, TLS files, every agent's "
        "state) and start from it next time: agents enrolled by an earlier run only check "
        "in during the warm-up (docs/scale.md)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    args.devices = [int(x) for x in args.devices.split(",") if x]
    pg = args.pg_devices
    args.pg_devices = [int(x) for x in pg.split(",") if x] if pg else args.devices
    for db in args.dbs.split(","):
        if db not in ("sqlite", "postgresql"):
            raise SystemExit(f"--dbs: unknown db {db!r}; expected sqlite or postgresql")
    if args.budget < args.window + _TEARDOWN_S + 10:
        raise SystemExit(
            f"--budget {args.budget:g}: expected at least --window + {_TEARDOWN_S + 10:g} s"
        )
    text, _ = plan(args)
    print(text, flush=True)
    if args.plan:
        return
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load_before": os.environ.get("BENCH_LOAD_BEFORE") or os.getloadavg()[0],
        "runs": [],
        "checkins": [],
        "install": [],
        "connection_cost": [],
    }
    started = time.monotonic()
    for db in args.dbs.split(","):
        if db == "sqlite" and args.fleet_dir is not None:
            keep = args.fleet_dir.resolve() / "sqlite"
            keep.mkdir(parents=True, exist_ok=True)
            run_db(db, f"sqlite:///{keep / 'fleet.db'}", args, out, workers=1, keep=keep)
        elif db == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp(prefix='edgeloop-bench-db-')}/fleet.db"
            run_db(db, url, args, out, workers=1)
        elif db == "postgresql":
            with postgres() as url:
                for w in [int(x) for x in args.pg_workers.split(",") if x]:
                    run_db(db, _fresh_pg(url, f"bench_w{w}"), args, out, workers=w)
        else:
            raise SystemExit(f"unknown db {db!r}; expected sqlite or postgresql")
    out["total_s"] = round(time.monotonic() - started, 1)
    out["load_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
