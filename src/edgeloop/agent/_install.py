"""Install, switch and load: the agent's slot machinery (synchronous, run off the event loop).

An install goes through named steps; ``on_step(name)`` is called after each, which is where
tests inject a crash::

    begin      state.json: the target slot emptied, the install recorded
    staged     the verified bundle (still encrypted) written into the slot
    loaded     the model decrypted in memory and loaded on ONNX Runtime
    selftested the bundle's self-test passed on this hardware
    switched   state.json: the slot active, on trial, the old slot known-good

Before ``switched`` the active model is untouched; after it, a failure on the trial slot
returns to the known-good one. A crash at any step leaves a state.json that names a slot whose
bundle verifies, so the next start serves a model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgeloop._io import read_bytes
from edgeloop.agent._models import LoadedModel, ModelCache
from edgeloop.agent._state import AgentState, SlotInfo, switch_to
from edgeloop.agent._store import StateDir
from edgeloop.artifacts import sha256_bytes
from edgeloop.errors import (
    AgentError,
    BundleFormatError,
    DecryptionError,
    FileError,
    IntegrityError,
    SecurityError,
)
from edgeloop.protocol import Assignment

if TYPE_CHECKING:
    from edgeloop.bundle import Trust

__all__ = ["Slots"]

StepHook = Callable[[str], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Slots:
    """The two slots of one agent, and the models loaded from them."""

    def __init__(
        self,
        store: StateDir,
        device_key: X25519PrivateKey,
        trust: Callable[[], Trust],
        cache: ModelCache,
        *,
        shared: bool = False,
        on_step: StepHook | None = None,
    ) -> None:
        self.store = store
        self.device_key = device_key
        self.trust = trust
        self.cache = cache
        self.shared = shared  # a cache shared by simulated agents: no per-file integrity check
        self.on_step: StepHook = on_step or (lambda step: None)

    # --- loading -------------------------------------------------------------------------
    def recipient_path(self, slot: str) -> Path:
        return self.store.slot_path(slot).with_name("recipient.json")

    def stored_recipient(self, slot: str) -> dict[str, Any] | None:
        """The data key the server wrapped for this device, kept beside the slot's bundle."""
        return self._recipient(slot)

    def _recipient(self, slot: str) -> dict[str, Any] | None:
        p = self.recipient_path(slot)
        if not p.exists():
            return None
        try:
            data = json.loads(read_bytes(p, "wrapped key"))
        except ValueError as e:
            raise IntegrityError(f"wrapped key {str(p)!r} is not JSON") from e
        return data if isinstance(data, dict) else None

    def load(self, slot: str, info: SlotInfo) -> LoadedModel:
        """Verify the slot's bundle against the signed metadata, then load it (or share it)."""
        path = self.store.slot_path(slot)
        try:
            data = read_bytes(path, f"slot {slot} bundle")
        except FileError as e:
            raise IntegrityError(str(e)) from e
        digest = sha256_bytes(data)
        if digest != info.sha256 or len(data) != info.length:
            raise IntegrityError(
                f"slot {slot} bundle has sha256 {digest[:16]} and {len(data)} bytes, "
                f"state.json says {info.sha256[:16]} and {info.length}"
            )
        from edgeloop.bundle import verify

        verify(data, self.trust())  # signature over the manifest, payload hash and length
        del data
        return self.cache.acquire(digest, lambda: self._open(slot, path, digest))

    def _open(self, slot: str, path: Path, digest: str) -> LoadedModel:
        from edgeloop.bundle import open_bundle
        from edgeloop.runtime import Session

        manifest, model, check = open_bundle(
            path, self.trust(), self.device_key, recipient=self._recipient(slot)
        )
        session = Session(model, integrity_check=None if self.shared else check)
        return LoadedModel(sha256=digest, manifest=manifest, runner=session)

    def selftest(self, model: LoadedModel) -> None:
        """Run the bundle's self-test once per loaded model; raise SelfTestError on a miss."""
        from edgeloop.bundle import check_selftest
        from edgeloop.errors import SelfTestError

        with model.lock:
            if model.selftest_ok is None:
                try:
                    check_selftest(model.manifest.selftest, model.runner.run)
                    model.selftest_ok = True
                except SelfTestError as e:
                    model.selftest_ok, model.selftest_error = False, str(e)
        if not model.selftest_ok:
            raise SelfTestError(model.selftest_error)

    # --- installing ----------------------------------------------------------------------
    def install(
        self,
        state: AgentState,
        slot: str,
        data: bytes,
        assignment: Assignment,
        recipient: dict[str, Any] | None,
    ) -> tuple[AgentState, LoadedModel]:
        """Verify, stage, load, self-test and switch to ``data``; return the new state.

        Raises SecurityError (the bundle is bad: do not retry it), or AgentError/FileError
        (the write or load failed: retry later); the active slot is untouched in both cases.
        """
        from edgeloop.bundle import verify

        if slot == state.active or (slot == state.known_good and state.trial):
            raise AgentError(f"refusing to install into slot {slot}: it holds the serving model")
        digest = sha256_bytes(data)
        if assignment.sha256 and digest != assignment.sha256:
            raise IntegrityError(
                f"download of {assignment.target!r} has sha256 {digest[:16]}, "
                f"the signed assignment says {assignment.sha256[:16]}"
            )
        highest = state.highest.get(assignment.model)
        manifest = verify(
            data, self.trust(), installed_version=None if assignment.rollback else highest
        )
        if (manifest.name, manifest.version) != (assignment.model, assignment.version):
            raise SecurityError(
                f"bundle {assignment.target!r} is {manifest.name}@{manifest.version}, "
                f"the signed assignment says {assignment.model}@{assignment.version}"
            )
        slots = dict(state.slots)
        slots[slot] = None
        begin = dataclasses.replace(
            state,
            slots=slots,
            installing={"slot": slot, "model": assignment.model, "version": assignment.version},
        )
        self.store.save_state(begin)
        self.on_step("begin")
        staged: Path | None = None
        try:
            self.recipient_path(slot).unlink(missing_ok=True)
            staged = self.store.write_slot(slot, data)
            if recipient is not None:
                self.store.write(self.recipient_path(slot), json.dumps(recipient).encode(), 0o600)
            self.on_step("staged")
            info = SlotInfo(
                model=manifest.name,
                version=manifest.version,
                sha256=digest,
                length=len(data),
                variant=assignment.variant,
                target=assignment.target,
                installed_at=_now(),
            )
            del data
            try:
                model = self.load(slot, info)
            except (DecryptionError, BundleFormatError) as e:
                # The bundle is the released one (its sha256 matched the signed metadata and it
                # verified above), so a failure to open it lies with the data key the server
                # sent (a transport fault, a tampered answer): retry later, never mark the
                # release as failed. Only a self-test failure condemns a verified bundle.
                raise AgentError(
                    f"the data key for {assignment.target!r} does not open the verified "
                    f"bundle (will fetch it again): {e}"
                ) from e
            self.on_step("loaded")
            try:
                self.selftest(model)
            except BaseException:
                self.cache.release(model.sha256)
                raise
            self.on_step("selftested")
        except BaseException:
            if staged is not None:
                self.store.clear_slot(slot)
            raise
        slots[slot] = info
        switched = switch_to(dataclasses.replace(begin, slots=slots), slot, trial=True)
        self.store.save_state(switched)
        self.on_step("switched")
        return switched, model
