"""The agent updates by a signed delta when one is listed from the model it runs, falls back to
the full bundle when the delta fails a check, and refuses a version the signed targets no
longer list. The TUF client is a fake serving listed files; the delta and bundles are real."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgeloop.agent import Agent
from edgeloop.bundle import make_delta, unwrap_data_key, verify, wrap_data_key
from edgeloop.errors import UpdateError
from edgeloop.update import TargetInfo


def _offer(delta: bytes, path: str = "m/2/m-2.from-1.eld") -> dict[str, Any]:
    """The director's pick, as a signed assignment carries it."""
    return {"target": path, "sha256": hashlib.sha256(delta).hexdigest(), "length": len(delta)}


class FakeTuf:
    """Lists ``files`` (path -> bytes, custom) and serves them; records what was fetched."""

    def __init__(self, root: Path, files: dict[str, tuple[bytes, dict[str, Any]]]) -> None:
        self.metadata_dir = root
        self.files = files
        self.fetched: list[str] = []

    def __enter__(self) -> FakeTuf:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def listed(self) -> dict[str, TargetInfo]:
        return {
            p: TargetInfo(p, hashlib.sha256(d).hexdigest(), len(d), c)
            for p, (d, c) in self.files.items()
        }

    def target_info(self, path: str) -> TargetInfo | None:
        return self.listed().get(path)

    def fetch_bundle(self, path: str, dest: Path) -> Path:
        self.fetched.append(path)
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / path.replace("/", "_")
        out.write_bytes(self.files[path][0])
        return out


@pytest.fixture
def fleet(agent_dir, trust, make_bundle, assignment_for, release_key) -> dict[str, Any]:
    key = X25519PrivateKey.generate()
    agent = Agent(None, agent_dir, trust=trust)
    agent.identity = {"device_id": "d-1"}
    agent.server_url = "http://127.0.0.1:9"
    v1 = make_bundle(key.public_key(), 1, n_weights=30000)
    v2 = make_bundle(key.public_key(), 2, n_weights=30000)

    def recipient(bundle: bytes) -> dict[str, str]:
        m = verify(bundle, trust)
        return wrap_data_key(unwrap_data_key(m.encryption, key), agent.encryption_key.public_key())

    assert agent.install(v1, assignment_for(v1, 1), recipient(v1))
    delta = make_delta(v1, v2, release_key, key)
    a2 = dataclasses.replace(assignment_for(v2, 2), delta=_offer(delta))
    custom = {
        "name": "m",
        "version": 2,
        "delta": {
            "from_version": 1,
            "base_sha256": hashlib.sha256(v1).hexdigest(),
            "bundle_sha256": a2.sha256,
            "bundle_length": a2.length,
            "target": a2.target,
        },
    }
    files = {
        a2.target: (v2, {"name": "m", "version": 2}),
        "m/2/m-2.from-1.eld": (delta, custom),
    }
    tuf = FakeTuf(agent_dir.parent / "tuf", files)
    rcpt = recipient(v2)

    class Client:
        async def recipient(self, device_id: str, target: str) -> dict[str, Any]:
            return rcpt

    agent._client = lambda: Client()  # type: ignore[method-assign]
    agent._tuf = lambda: tuf  # type: ignore[method-assign]
    return {
        "agent": agent,
        "tuf": tuf,
        "a2": a2,
        "v2": v2,
        "delta": delta,
        "files": files,
        "key": key,
        "make_bundle": make_bundle,
        "release_key": release_key,
    }


def _serves(agent: Agent, version: int) -> bool:
    y = agent.predict({"x": np.ones((1, 4), np.float32)})["y"]
    return float(y[0, 0]) == float(version)


def test_update_by_delta_downloads_only_the_delta(fleet: dict[str, Any]) -> None:
    agent, tuf = fleet["agent"], fleet["tuf"]
    assert asyncio.run(agent.apply(fleet["a2"])) is True
    assert tuf.fetched == ["m/2/m-2.from-1.eld"]
    assert agent.state.current is not None and agent.state.current.sha256 == fleet["a2"].sha256
    assert _serves(agent, 2)
    m = agent.telemetry.metrics()
    assert m["delta_updates"] == 1 and m["bytes_downloaded"] == len(fleet["delta"])
    assert len(fleet["delta"]) < len(fleet["v2"]) / 4


def test_a_delta_that_fails_a_check_falls_back_to_the_full_bundle(
    fleet: dict[str, Any],
) -> None:
    """A delta listed for this base but built from another model (a release-side mistake):
    the rebuilt model misses the signed hash, the agent fetches the full bundle."""
    other = fleet["make_bundle"](fleet["key"].public_key(), 1, scale=7.0, n_weights=30000)
    wrong = make_delta(other, fleet["v2"], fleet["release_key"], fleet["key"])
    path = "m/2/m-2.from-1.eld"
    fleet["files"][path] = (wrong, fleet["files"][path][1])
    agent, tuf = fleet["agent"], fleet["tuf"]
    a2 = dataclasses.replace(fleet["a2"], delta=_offer(wrong))
    assert asyncio.run(agent.apply(a2)) is True
    assert tuf.fetched == [path, fleet["a2"].target]
    assert _serves(agent, 2)
    m = agent.telemetry.metrics()
    assert m["delta_fallbacks"] == 1 and "delta_updates" not in m
    assert m["bytes_downloaded"] == len(wrong) + len(fleet["v2"])


def test_a_revoked_version_is_refused_before_any_download(fleet: dict[str, Any]) -> None:
    del fleet["files"][fleet["a2"].target]  # the release side revoked v2; its delta lingers
    agent = fleet["agent"]
    with pytest.raises(UpdateError, match="not in the signed TUF targets"):
        asyncio.run(agent.apply(fleet["a2"]))
    assert fleet["tuf"].fetched == []
    assert _serves(agent, 1)


def test_an_assigned_delta_the_targets_do_not_list_falls_back(fleet: dict[str, Any]) -> None:
    del fleet["files"]["m/2/m-2.from-1.eld"]
    assert asyncio.run(fleet["agent"].apply(fleet["a2"])) is True
    assert fleet["tuf"].fetched == [fleet["a2"].target]
    assert fleet["agent"].telemetry.totals["delta_fallbacks"] == 1


def test_an_assignment_without_a_delta_takes_the_full_bundle(fleet: dict[str, Any]) -> None:
    """The director picked the full bundle: the listed delta is not used."""
    a2 = dataclasses.replace(fleet["a2"], delta=None)
    assert asyncio.run(fleet["agent"].apply(a2)) is True
    assert fleet["tuf"].fetched == [a2.target]
    assert "delta_fallbacks" not in fleet["agent"].telemetry.totals


def test_a_revocation_never_takes_a_delta_for_a_bundle() -> None:
    from edgeloop.agent._revocation import plan_revocation
    from edgeloop.agent._state import AgentState, SlotInfo

    info = SlotInfo("m", 2, "a" * 64, 10, "fp32", "m/2/m-2-fp32.elb", "2026-01-01T00:00:00+00:00")
    state = AgentState(active="a", known_good="a", slots={"a": info, "b": None})
    listed = {
        "m/1/m-1-fp32.elb": TargetInfo(
            "m/1/m-1-fp32.elb", "b" * 64, 10, {"name": "m", "version": 1}
        ),
        "m/3/x.eld": TargetInfo("m/3/x.eld", "c" * 64, 5, {"name": "m", "version": 3, "delta": {}}),
    }
    plan = plan_revocation(state, listed)
    assert [t.path for t in plan.candidates] == ["m/1/m-1-fp32.elb"]
