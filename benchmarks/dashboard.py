"""Dashboard pages at fleet scale: the overview and the device list with 10,000 devices.

One fleet database (SQLite by default, or ``--db-url postgresql+psycopg://...``) with N
devices (five hardware classes, three regions, two installed versions, a spread of last-seen
times, some degraded, failing and revoked), the real server app (``create_app``) signed in
through the dashboard's login form, and each page requested ``--repeat`` times in process
(Starlette's test client: the whole app and its SQL, no network). Pages: the overview (counts
by state, version and hardware; the first 50 rows), the device list's first, a middle and the
last page, and each filter (state, version, hardware, label, last seen) alone and combined.
Goal: every page under 300 ms at 10,000 devices (issue 15).

Prints a table and writes ``benchmarks/results/dashboard.json``.

    python benchmarks/dashboard.py                     # 10,000 devices, 20 requests per page
    python benchmarks/dashboard.py --devices 1000 --repeat 5
    python benchmarks/dashboard.py --devices 10000 --repeat 1 --screenshots docs/img
        # also the overview and a filtered device list in headless Chromium (Playwright):
        # docs/img/dashboard-overview.png and docs/img/dashboard-devices.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "dashboard.json"
HARDWARE = [
    ("rpi4", "aarch64"),
    ("rpi5", "aarch64"),
    ("jetson", "aarch64"),
    ("n100", "x86_64"),
    ("nuc", "x86_64"),
]
REGIONS = ("eu", "us", "apac")
GOAL_MS = 300.0


def fill(engine: Any, n: int, now: datetime, poll_s: float, seed: int = 0) -> None:
    """N device rows in one transaction (the enrollment's columns, as check-ins leave them)."""
    import sqlalchemy as sa

    from edgeloop.db import DeviceRow, write_session

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name, arch = HARDWARE[i % len(HARDWARE)]
        version = 2 if rng.random() < 0.3 else 1
        r = rng.random()
        # 85 % heard from within a poll, 10 % a while ago, 5 % never since enrollment
        seen = (
            now - timedelta(seconds=rng.uniform(0, poll_s))
            if r < 0.85
            else (now - timedelta(hours=rng.uniform(1, 72)) if r < 0.95 else None)
        )
        health = rng.choices(["ok", "degraded", "failing"], [0.95, 0.04, 0.01])[0]
        rows.append(
            {
                "id": f"d-{i:06d}",
                "signing_key": f"{i:064x}",
                "encryption_key": "0" * 64,
                "name": None,
                "labels": {"region": REGIONS[i % len(REGIONS)], "utc_offset": "+01:00"},
                "model": "kws",
                "enrolled_at": now - timedelta(days=30),
                "last_seen": seen,
                "agent_version": "0.1.0",
                "agent_build": None,
                "profile": {
                    "kind": "device_profile",
                    "schema_version": 1,
                    "name": name,
                    "source": "builtin",
                    "arch": arch,
                    "cpu_model": name,
                    "isa": [],
                },
                "installed": {"model": "kws", "version": version, "variant": "fp32", "sha256": ""},
                "installed_version": version,
                "known_good": None,
                "health": health,
                "last_error": None,
                "revoked": i % 997 == 0,
                "revoked_at": None,
            }
        )
    with write_session(engine) as s:
        s.execute(sa.insert(DeviceRow), rows)


PAGES = [
    ("overview", "/dashboard"),
    ("list page 1", "/dashboard/devices"),
    ("list middle page", "/dashboard/devices?page={middle}"),
    ("list last page", "/dashboard/devices?page={last}"),
    ("state=offline", "/dashboard/devices?state=offline"),
    ("state=failing", "/dashboard/devices?state=failing"),
    ("version=kws@2", "/dashboard/devices?version=kws%402"),
    ("hardware=jetson", "/dashboard/devices?hardware=jetson"),
    ("label=region=apac", "/dashboard/devices?label=region%3Dapac"),
    ("seen=>1h", "/dashboard/devices?seen=%3E1h"),
    (
        "combined, page 3",
        "/dashboard/devices?version=kws%401&hardware=rpi4&state=ok"
        "&label=region%3Deu&seen=%3C10m&page=3",
    ),
    ("per_page=500, page 5", "/dashboard/devices?per_page=500&page=5"),
]


def screenshots(app: Any, token: str, folder: Path) -> list[str]:
    """The overview and a filtered device list, served on loopback, in headless Chromium."""
    import socket
    import threading

    import uvicorn
    from playwright.sync_api import sync_playwright

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    folder.mkdir(parents=True, exist_ok=True)
    shots = [
        ("dashboard-overview.png", "/dashboard"),
        ("dashboard-devices.png", "/dashboard/devices?state=offline&version=kws%402&per_page=25"),
    ]
    try:
        with sync_playwright() as p:
            chromium = Path("/usr/bin/chromium")
            browser = p.chromium.launch(
                executable_path=str(chromium) if chromium.exists() else None,
                args=["--no-sandbox", "--disable-gpu"],
            )
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url + "/dashboard")
            page.fill("#token", token)
            page.click("#sign-in")
            page.wait_for_selector("#device-total")
            for name, path in shots:
                page.goto(url + path)
                page.wait_for_selector("#devices")
                page.screenshot(path=str(folder / name), full_page=name != "dashboard-overview.png")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return [str(folder / name) for name, _ in shots]


def run(n: int, repeat: int, db_url: str | None, shots: Path | None = None) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from edgeloop.db import make_engine
    from edgeloop.fleet import FleetSettings, create_app

    tmp = Path(tempfile.mkdtemp(prefix="edgeloop-dashboard-bench-"))
    url = db_url or f"sqlite:///{tmp / 'fleet.db'}"
    poll = 60.0
    settings = FleetSettings(
        url, tmp / "data", poll_interval_s=poll, create_release_keys=True, monitor_interval_s=0.0
    )
    app = create_app(settings)
    with TestClient(app) as client:
        engine = make_engine(url)
        t0 = time.perf_counter()
        fill(engine, n, datetime.now(timezone.utc), poll)
        fill_s = time.perf_counter() - t0
        engine.dispose()
        token = (tmp / "data" / "admin-token").read_text().strip()
        r = client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
        last = max(1, -(-n // 100))
        rows = []
        for label, path in PAGES:
            path = path.format(middle=max(1, last // 2), last=last)
            times = []
            for i in range(repeat + 1):
                t = time.perf_counter()
                resp = client.get(path)
                ms = (time.perf_counter() - t) * 1e3
                if resp.status_code != 200:
                    raise SystemExit(f"{path}: {resp.status_code} {resp.text[:200]}")
                if i:  # the first request warms the template cache and the query plans
                    times.append(ms)
            times.sort()
            rows.append(
                {
                    "page": label,
                    "path": path,
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1),
                    "max_ms": round(times[-1], 1),
                    "bytes": len(resp.content),
                }
            )
        taken = screenshots(app, token, shots) if shots is not None else []
    return {
        "screenshots": taken,
        "devices": n,
        "db": url.split(":", 1)[0],
        "repeat": repeat,
        "fill_s": round(fill_s, 1),
        "pages": rows,
        "worst_p95_ms": max(r["p95_ms"] for r in rows),
        "goal_ms": GOAL_MS,
    }


def table(result: dict[str, Any]) -> str:
    head = f"{'page':<22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'KiB':>6}"
    lines = [
        f"{result['devices']} devices, {result['db']}, {result['repeat']} requests per page",
        head,
        "-" * len(head),
    ]
    for r in result["pages"]:
        lines.append(
            f"{r['page']:<22} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
            f"{r['max_ms']:>8.1f} {r['bytes'] / 1024:>6.1f}"
        )
    ok = "within" if result["worst_p95_ms"] < GOAL_MS else "ABOVE"
    lines.append(f"worst p95 {result['worst_p95_ms']:.1f} ms: {ok} the {GOAL_MS:g} ms goal")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--db-url", default=None, help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--screenshots", type=Path, default=None, help="a folder for PNGs")
    args = parser.parse_args()
    start = time.perf_counter()
    results = []
    for n in args.devices:
        result = run(n, args.repeat, args.db_url, args.screenshots)
        print(table(result))
        results.append(result)
    out = {
        "method": "in-process requests (Starlette test client) to the real app, signed in; "
        "the first request per page is not counted",
        "runs": results,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_before": os.environ.get("BENCH_LOAD_BEFORE"),
        "load_after": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
