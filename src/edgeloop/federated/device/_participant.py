"""A device taking part in deployed federated runs: the agent's side of joining.

::

    p = Participant(signing_key, ca_pem, work_dir, JoinPolicy())
    status = p.step(run, labels=agent.labels, x=embeddings, y=labels, recent_requests=3.0)

``run`` is what the fleet server's ``/v1/federated/poll`` answered (``{"id", "superlink"}`` or
None). :meth:`Participant.step` decides: no run (or another run) stops a running SuperNode; a
run this device is not yet in is joined only when the device-side policy (:func:`eligible`)
says so and Flower is installed, by writing the labelled samples (0600) and starting
:class:`SuperNode` with them; a SuperNode that exited (the run ended, or the SuperLink went
away) is cleaned up. A device without Flower says it cannot join and carries on. Standard
library, numpy and ``cryptography`` only (no Flower import: the SuperNode is a child process).
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeloop._io import atomic_write_bytes
from edgeloop.errors import AgentError, InputError
from edgeloop.federated.device._join import JoinPolicy, bind_node_key, eligible
from edgeloop.federated.device._supernode import SuperNode

__all__ = ["Participant", "flower_installed"]

SAMPLES_KEY = "edgeloop-samples"


def flower_installed() -> bool:
    """Whether ``flower-supernode`` (the ``federated`` extra) is on this device."""
    return (Path(sys.executable).parent / "flower-supernode").exists() or \
        shutil.which("flower-supernode") is not None


class Participant:
    """One device's part in deployed runs (module docstring)."""

    def __init__(self, signing_key: Ed25519PrivateKey, ca_pem: str | Path,
                 work_dir: str | Path, policy: JoinPolicy | None = None) -> None:
        self._key = signing_key
        self.ca_pem = Path(ca_pem)
        self.work_dir = Path(work_dir)
        self.policy = policy or JoinPolicy()
        self.node: SuperNode | None = None
        self.run_id: str | None = None
        self.finished: set[str] = set()  # runs this device took part in until they ended

    @classmethod
    def for_agent(cls, agent: Any, policy: JoinPolicy | None = None) -> Participant:
        """A participant for an ``edgeloop.agent.Agent``: its device key, the CA it pins (written
        to its state directory) and ``STATE/federated`` as the SuperNode's directory. The fleet
        server must be pinned over TLS: Flower's node authentication needs it."""
        provisioning = agent.pinned.provisioning
        ca = provisioning.ca_pem if provisioning is not None else None
        if not ca:
            raise InputError("federated runs need the fleet server pinned over TLS "
                             "(a provisioning file with its CA)")
        work = Path(agent.store.root) / "federated"
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(work / "ca.pem", ca.encode(), 0o600)
        return cls(agent.signing_key, work / "ca.pem", work, policy)

    @property
    def joined(self) -> bool:
        return self.node is not None and self.node.running

    def unavailable(self) -> str | None:
        """Why this device cannot take part at all (None: it can)."""
        if not flower_installed():
            return "Flower is not installed on this device (pip install 'edgeloop[federated]')"
        return None

    def binding(self, device_id: str) -> dict[str, str]:
        """The signed node key binding the fleet server keeps."""
        return bind_node_key(self._key, device_id)

    @property
    def samples_file(self) -> Path:
        return self.work_dir / "samples.npz"

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        self.node = None
        self.samples_file.unlink(missing_ok=True)

    def step(self, run: dict[str, Any] | None, *, labels: dict[str, str],
             x: npt.NDArray[Any], y: npt.NDArray[Any], recent_requests: float) -> str:
        """One decision (module docstring); returns what this device is doing, in words."""
        run_id = run.get("id") if isinstance(run, dict) else None
        superlink = run.get("superlink") if isinstance(run, dict) else None
        if self.node is not None:
            if run_id == self.run_id and self.node.running:
                return f"in run {self.run_id} as node {self.node.node_id}"
            ended = self.run_id
            self.stop()
            if ended is not None:
                self.finished.add(ended)
            self.run_id = None
            if run_id is None or run_id == ended:
                return f"left run {ended}: it ended"
        if not isinstance(run_id, str) or not isinstance(superlink, str):
            return "no federated run open for this device"
        if run_id in self.finished:
            return f"run {run_id} already done here"
        why_not = self.unavailable()
        if why_not is not None:
            return f"cannot join run {run_id}: {why_not}"
        ok, why = eligible(self.policy, labels, labelled=len(y),
                           recent_requests=recent_requests)
        if not ok:
            return f"not joining run {run_id}: {why}"
        buf = io.BytesIO()
        np.savez(buf, x=np.asarray(x, np.float32).reshape(len(y), -1),
                 y=np.asarray(y, np.int64))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.samples_file, buf.getvalue(), 0o600)
        try:
            node = SuperNode(self._key, superlink, self.ca_pem, self.work_dir,
                             node_config={SAMPLES_KEY: str(self.samples_file.resolve())})
            node_id = node.start()
        except (AgentError, InputError) as e:
            self.samples_file.unlink(missing_ok=True)
            return f"could not join run {run_id}: {e}"
        self.node, self.run_id = node, run_id
        return f"joined run {run_id} as node {node_id} ({why})"
