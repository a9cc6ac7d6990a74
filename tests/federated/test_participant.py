"""The agent's side of joining a deployed run (device-only: no Flower, no torch): the policy
decides, a device without Flower says it cannot join, a joined SuperNode gets the samples file
and is stopped when the run closes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeloop.federated.device import JoinPolicy, Participant
from edgeloop.federated.device import _participant as participant_module

READY = {"power": "mains", "network": "unmetered"}
X, Y = np.ones((60, 4), np.float32), np.arange(60) % 3


class FakeNode:
    started: list[FakeNode] = []

    def __init__(self, key: Any, superlink: str, ca: Path, work: Path, *,
                 node_config: dict[str, str]) -> None:
        self.superlink, self.node_config = superlink, node_config
        self.node_id, self.running = 7, False

    def start(self) -> int:
        self.running = True
        FakeNode.started.append(self)
        return self.node_id

    def stop(self) -> None:
        self.running = False


@pytest.fixture
def part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Participant:
    monkeypatch.setattr(participant_module, "SuperNode", FakeNode)
    monkeypatch.setattr(participant_module, "flower_installed", lambda: True)
    FakeNode.started = []
    return Participant(Ed25519PrivateKey.generate(), tmp_path / "ca.pem", tmp_path / "fl",
                       JoinPolicy(min_labels=50))


def test_no_run_means_nothing_to_do(part: Participant) -> None:
    assert "no federated run" in part.step(None, labels=READY, x=X, y=Y, recent_requests=0)
    assert not FakeNode.started


def test_the_device_policy_decides(part: Participant) -> None:
    run = {"id": "r1", "superlink": "127.0.0.1:9093"}
    assert "not powered" in part.step(run, labels={}, x=X, y=Y, recent_requests=0)
    assert "busy" in part.step(run, labels=READY, x=X, y=Y, recent_requests=100)
    assert "too few" in part.step(run, labels=READY, x=X[:5], y=Y[:5], recent_requests=0)
    assert not FakeNode.started


def test_an_eligible_device_joins_with_its_samples_and_leaves_when_the_run_closes(
        part: Participant) -> None:
    run = {"id": "r1", "superlink": "127.0.0.1:9093"}
    assert part.step(run, labels=READY, x=X, y=Y, recent_requests=0).startswith("joined run r1")
    node = FakeNode.started[0]
    path = Path(node.node_config["edgeloop-samples"])
    with np.load(path) as data:
        assert data["x"].shape == (60, 4) and list(data["y"][:3]) == [0, 1, 2]
    assert path.stat().st_mode & 0o077 == 0  # private
    assert "in run r1" in part.step(run, labels=READY, x=X, y=Y, recent_requests=0)
    assert "left run r1" in part.step(None, labels=READY, x=X, y=Y, recent_requests=0)
    assert not node.running and not path.exists()
    assert "already done" in part.step(run, labels=READY, x=X, y=Y, recent_requests=0)
    assert len(FakeNode.started) == 1


def test_a_device_without_flower_says_it_cannot_join(part: Participant,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(participant_module, "flower_installed", lambda: False)
    run = {"id": "r1", "superlink": "127.0.0.1:9093"}
    assert "Flower is not installed" in part.step(run, labels=READY, x=X, y=Y,
                                                  recent_requests=0)
