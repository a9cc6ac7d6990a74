"""Rollout fixtures: a fleet database with two published versions, devices and telemetry."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from edgeloop.artifacts import DeviceProfile
from edgeloop.db import (
    DeviceRow,
    ReleaseRow,
    ReportRow,
    VariantRow,
    make_engine,
    upgrade,
    write_session,
)
from edgeloop.registry import Registry

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
ARM = DeviceProfile(name="rpi4", source="builtin", arch="aarch64", cpu_model="A72", isa=("neon",))
X86 = DeviceProfile(name="n100", source="builtin", arch="x86_64", cpu_model="N100", isa=("avx2",))


@dataclass
class RolloutDB:
    """A fleet database (SQLite file) with ``kws`` versions 1 and 2 published, 1 desired."""

    url: str
    data: Path
    engine: Any
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add_devices(
        self, n: int, version: int = 1, arch: str = "aarch64", **labels: str
    ) -> list[str]:
        profile = ARM if arch == "aarch64" else X86
        ids = []
        with write_session(self.engine) as s:
            start = s.scalar(sa.select(sa.func.count()).select_from(DeviceRow)) or 0
            for i in range(n):
                device_id = f"d-{start + i:05d}"
                s.add(
                    DeviceRow(
                        id=device_id,
                        signing_key=f"{start + i:064x}",
                        encryption_key="0" * 64,
                        labels=dict(labels),
                        model="kws",
                        enrolled_at=T0,
                        last_seen=T0,
                        profile=profile.to_dict(),
                        installed={
                            "model": "kws",
                            "version": version,
                            "variant": "fp32",
                            "sha256": "",
                        },
                        installed_version=version,
                        health="ok",
                        revoked=False,
                    )
                )
                ids.append(device_id)
        return ids

    def install(self, device_ids: list[str], version: int) -> None:
        with write_session(self.engine) as s:
            s.execute(
                sa.update(DeviceRow)
                .where(DeviceRow.id.in_(device_ids))
                .values(
                    installed_version=version,
                    installed={"model": "kws", "version": version, "variant": "fp32", "sha256": ""},
                )
            )

    def versions(self) -> dict[str, int | None]:
        with write_session(self.engine) as s:
            rows = s.execute(sa.select(DeviceRow.id, DeviceRow.installed_version))
            return {r[0]: r[1] for r in rows}

    def report(
        self,
        when: datetime,
        error_rate: float = 0.002,
        p99_ms: float = 10.0,
        requests: int = 50,
        only: set[str] | None = None,
        bad: dict[str, float] | None = None,
    ) -> None:
        """One telemetry report per device from the version it has installed."""
        with write_session(self.engine) as s:
            for device_id, version in s.execute(
                sa.select(DeviceRow.id, DeviceRow.installed_version)
            ):
                if only is not None and device_id not in only:
                    continue
                rate = (bad or {}).get(device_id, error_rate if version == 2 else 0.002)
                errors = sum(self.rng.random() < rate for _ in range(requests))
                metrics = {
                    "requests": requests,
                    "errors": errors,
                    "error_rate": errors / requests,
                    "p99_ms": (p99_ms if version == 2 else 10.0) * self.rng.lognormvariate(0, 0.15),
                }
                s.add(
                    ReportRow(
                        device_id=device_id,
                        received_at=when,
                        model="kws",
                        version=version,
                        window_s=10.0,
                        metrics=metrics,
                        report={"device_id": device_id, "version": version, "metrics": metrics},
                    )
                )


def _make(tmp: Path) -> RolloutDB:
    url = f"sqlite:///{tmp / 'fleet.db'}"
    data = tmp / "data"
    engine = make_engine(url)
    upgrade(engine)
    src = tmp / "m.onnx"
    src.write_bytes(b"not really onnx; the registry stores bytes")
    with Registry(url, data) as reg:
        reg.push(src, "kws", version=1, alias="production")
        src.write_bytes(b"version 2 bytes")
        reg.push(src, "kws", version=2)
    with write_session(engine) as s:
        for v in (1, 2):
            rel = ReleaseRow(model="kws", version=v, published_at=T0)
            s.add(rel)
            s.flush()
            s.add(
                VariantRow(
                    release_id=rel.id,
                    variant="fp32",
                    target=f"kws/{v}/kws-{v}-fp32.elb",
                    sha256=f"{v:064x}",
                    length=100 + v,
                    requires={},
                    fleet_wrap={},
                )
            )
    return RolloutDB(url, data, engine)


@pytest.fixture
def rollout_db(tmp_path: Path) -> Iterator[RolloutDB]:
    db = _make(tmp_path)
    try:
        yield db
    finally:
        db.engine.dispose()


@pytest.fixture
def at() -> Any:
    """``at(seconds)``: T0 plus that many seconds."""
    return lambda seconds: T0 + timedelta(seconds=seconds)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless chromium under Playwright (absent: skipped here, a failure in CI)."""
    import os

    reason = ""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} not found (apt install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "playwright is not installed (pip install playwright)"
    if reason:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI must provide this: {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def live_app(rollout_db: RolloutDB) -> Iterator[Any]:
    """The real fleet app on the rollout database, served by uvicorn on 127.0.0.1 (a thread),
    on a socket bound before uvicorn starts (tests/_live.py)."""
    from _live import serve_app
    from edgeloop.fleet import FleetSettings, create_app

    app = create_app(FleetSettings(
            rollout_db.url, rollout_db.data, poll_interval_s=2.0, create_release_keys=True
        ))
    token = (rollout_db.data / "admin-token").read_text().strip()
    with serve_app(app) as url:
        yield url, token
