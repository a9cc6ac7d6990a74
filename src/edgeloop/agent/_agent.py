"""``Agent``: keeps one model serving on a device and follows what the fleet server assigns.

The loop (:meth:`Agent.poll_once`, or :meth:`Agent.run` until stopped): enroll once, send the
telemetry window, check in, and act on the signed assignment (nothing, switch slots, or
download through TUF and install). Network I/O is async (``httpx.AsyncClient``); file and model
work runs in threads, so the simulator can drive thousands of agents from one event loop.

Serving never waits for the network: :meth:`predict` reads the active model (one attribute)
and a switch replaces it in one assignment. With the server unreachable, a corrupt download or
a full disk, the agent keeps serving what it has and retries with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import numpy as np

if TYPE_CHECKING:  # imported where used, so the agent starts without python-tuf loaded
    from tuf.ngclient import FetcherInterface

    from edgeloop.bundle import Trust

from edgeloop.agent._backoff import Backoff
from edgeloop.agent._client import FleetClient
from edgeloop.agent._delta import fetch_by_delta
from edgeloop.agent._fetch import check_listed, fetch_target
from edgeloop.agent._install import Slots
from edgeloop.agent._integrity import package_build_hash
from edgeloop.agent._models import LoadedModel, ModelCache
from edgeloop.agent._monitoring import Monitoring
from edgeloop.agent._personal import (
    PersonalConfig,
    PersonalHead,
    PersonalMismatch,
    fit_personal,
    load_personal,
    personal_key,
)
from edgeloop.agent._pinned import PinnedTrust
from edgeloop.agent._revocation import enforce_revocation
from edgeloop.agent._state import (
    AgentState,
    SlotInfo,
    boot,
    clean_exit,
    confirm,
    decide,
    fall_back,
    record_failure,
    switch_to,
)
from edgeloop.agent._store import StateDir, Writer
from edgeloop.agent._telemetry import Telemetry, process_resources
from edgeloop.artifacts import DeviceProfile, DeviceReport, sha256_bytes
from edgeloop.errors import (
    AgentError,
    AuthError,
    DataError,
    EdgeloopError,
    FleetError,
    InputError,
    ModelInputError,
    SecurityError,
    SelfTestError,
    SignatureError,
)
from edgeloop.protocol import (
    Assignment,
    CheckIn,
    CheckInResponse,
    EnrollRequest,
    InstalledModel,
    Provisioning,
    parse_time,
    payload_sha256,
    public_hex,
    verify_assignment,
)

__all__ = ["Agent"]

log = logging.getLogger("edgeloop.agent")

AGENT_VERSION = "0.1.0"
RETRYABLE = (httpx.HTTPError, FleetError, AgentError, OSError, EdgeloopError)


def _installed(info: SlotInfo | None) -> InstalledModel | None:
    if info is None:
        return None
    return InstalledModel(info.model, info.version, info.variant, info.sha256)


class FederatedParticipant(Protocol):
    """What the agent needs of ``federated.device.Participant`` (the agent never imports the
    federated package: ``Participant.for_agent(agent)`` wires one in)."""

    @property
    def joined(self) -> bool: ...

    def unavailable(self) -> str | None: ...

    def binding(self, device_id: str) -> dict[str, str]: ...

    def step(self, run: dict[str, Any] | None, *, labels: dict[str, str], x: np.ndarray,
             y: np.ndarray, recent_requests: float) -> str: ...

    def stop(self) -> None: ...


class Agent:
    """The device agent. See ``docs/fleet.md`` for the state directory and failure behaviour.

    A new model is on trial after the switch: errors above ``trial_max_error_rate`` (after
    ``trial_min_requests``) return to the known-good slot; a trial that lasted
    ``confirm_after_s`` (default: one poll interval) is confirmed at the next poll.
    ``cache``: share loaded models between agents of one process (the simulator does);
    ``http``: share one connection pool; ``writer``/``on_step``: fault injection for tests.
    ``provisioning``: the trust this device pins (server URL, TUF root, director key, CA,
    enrollment token; kept in the state dir); without one the agent enrolls only when
    ``insecure_first_use`` (trust on first use) is set. ``server_url`` and ``enroll_token``
    default to the provisioning file's. Every ``revocation_check_s`` (and before any switch)
    the agent reads the release side's signed targets and stops running a revoked version
    (``_revocation``). ``deltas``: take the delta the director assigns (``_delta``), falling
    back to the full bundle; False always downloads full bundles. ``personalize_every``: at
    each poll, fit a personal head (:meth:`personalize`) once that many new delayed labels
    arrived since the last fit (None: only when :meth:`personalize` is called).
    """

    def __init__(
        self,
        server_url: str | None,
        state_dir: str | Path,
        enroll_token: str | None = None,
        profile: DeviceProfile | None = None,
        *,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        trust: Trust | None = None,
        cache: ModelCache | None = None,
        http: httpx.AsyncClient | None = None,
        writer: Writer | None = None,
        on_step: Callable[[str], None] | None = None,
        poll_interval_s: float = 60.0,
        confirm_after_s: float | None = None,
        trial_min_requests: int = 5,
        trial_max_error_rate: float = 0.5,
        rng: random.Random | None = None,
        provisioning: Provisioning | None = None,
        insecure_first_use: bool = False,
        revocation_check_s: float = 600.0,
        deltas: bool = True,
        shared_blobs: str | Path | None = None,
        personalize_every: int | None = None,
        federated: FederatedParticipant | None = None,
    ) -> None:
        # shared_blobs: slots hard-linked to one content-addressed copy per bundle (_store)
        self.store = StateDir(state_dir, writer, blobs=shared_blobs)
        self.pinned = PinnedTrust(
            self.store.root,
            provisioning,
            insecure_first_use=insecure_first_use,
            tuf_root_path=self.store.tuf_dir / "root.json",
            save=lambda path, data: self.store.write(path, data, 0o600),
        )
        pinned = self.pinned.provisioning
        self.server_url = server_url or (pinned.server_url if pinned else None)
        self.enroll_token = enroll_token or (pinned.enroll_token if pinned else None)
        self._profile = profile
        self.name, self.labels = name, dict(labels or {})
        self._trust = trust
        self._root_cache: tuple[bytes, Trust] | None = None
        self.fetcher: FetcherInterface | None = (
            None  # a shared TUF fetcher (the simulator's connection pool)
        )
        self.signing_key, self.encryption_key = self.store.keys()
        self._personal_key = personal_key(self.signing_key)
        self.personal: PersonalHead | None = None  # the head fitted here, for the active base
        self.personal_status = "no personal head fitted"  # why it serves, or why it does not
        if personalize_every is not None and not 1 <= personalize_every <= 1_000_000:
            raise InputError(f"personalize_every={personalize_every!r}: expected 1..1000000 labels")
        self.personalize_every = personalize_every
        self._labels_at_fit = 0.0
        self.identity = self.store.load_identity()
        # deployed federated runs (federated.device.Participant.for_agent; None: never joins)
        self.participant = federated
        self.federated_status: str | None = None
        self._binding_sent: str | None = None
        self._requests_at: tuple[float, float] | None = None
        self._http = http
        self._own_http = http is None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self.backoff = Backoff(interval=poll_interval_s, rng=rng or random.Random())
        self.confirm_after_s = confirm_after_s
        self.trial_min_requests = trial_min_requests
        self.trial_max_error_rate = trial_max_error_rate
        self.telemetry = Telemetry()
        self.revocation_check_s = revocation_check_s
        self.deltas = deltas
        self._listing_checked: float | None = None
        self.monitoring = Monitoring()
        self.last_error: str | None = None  # the last install or model failure (reported)
        self.poll_error: str | None = None  # the last poll's failure; None once one succeeds
        self.degraded = False
        self._lock = threading.RLock()
        self._model: LoadedModel | None = None
        self._switched_at = 0.0
        self._trial_requests = 0
        self._trial_errors = 0
        self._retry_install = False  # the last install failed in a way worth retrying
        # the last signed assignment verified: (sha256 of its payload, it); its hash goes in
        # the check-in until half its lifetime, so the server may answer ``unchanged``
        self._held: tuple[str, Assignment] | None = None
        self.slots = Slots(
            self.store,
            self.encryption_key,
            self.trust,
            cache if cache is not None else ModelCache(),
            shared=cache is not None,
            on_step=on_step,
        )
        self.store.remove_stray_temps()
        self.state = boot(self.store.load_state())
        self.store.save_state(self.state)
        self._activate()

    # --- trust and identity ----------------------------------------------------------------
    def trust(self) -> Trust:
        """Release keys to verify bundles with: given, or from the TUF root this device holds."""
        if self._trust is not None:
            return self._trust
        from edgeloop.bundle import Trust

        root = self.store.tuf_dir / "root.json"
        try:
            data = root.read_bytes()
        except OSError as e:
            raise AgentError(f"no trust root at {str(root)!r} ({e}): enroll first") from e
        if self._root_cache is None or self._root_cache[0] != data:
            self._root_cache = (data, Trust.from_root_bytes(data))
        return self._root_cache[1]

    @property
    def device_id(self) -> str | None:
        return None if self.identity is None else str(self.identity["device_id"])

    def profile(self) -> DeviceProfile:
        if self._profile is None:
            from edgeloop.hardware import profile_device

            self._profile = profile_device(quick=True)
        return self._profile

    # --- serving ---------------------------------------------------------------------------
    @property
    def model(self) -> LoadedModel | None:
        return self._model

    def _activate(self) -> None:
        """Load the active slot; on failure go back to the known-good one (state saved)."""
        for _ in range(2):
            info = self.state.current
            if info is None:
                self._set_model(None)
                return
            if info.sha256 in self.state.failed:  # revoked while it was running
                self.last_error = f"slot {self.state.active}: {self.state.failed[info.sha256]}"
                self._set_model(None)
                return
            try:
                model = self.slots.load(str(self.state.active), info)
                self.slots.selftest(model)
            except (EdgeloopError, OSError) as e:
                self.last_error = f"slot {self.state.active} failed to load: {e}"
                self.telemetry.count("load_failures")
                fallen_back = fall_back(self.state, self.last_error)
                if fallen_back.active == self.state.active:
                    self._set_model(None)  # nothing to return to: serve nothing, keep polling
                    return
                self._commit(fallen_back)
                continue
            self._set_model(model)
            return

    def _set_model(self, model: LoadedModel | None) -> None:
        old, self._model = self._model, model
        self.monitoring.activate(model.sha256 if model else None, model.manifest if model else None)
        self._load_personal(model)
        self._switched_at = time.monotonic()
        self._trial_requests = self._trial_errors = 0
        if old is not None and (model is None or old.sha256 != model.sha256):
            self.slots.cache.release(old.sha256)

    def _commit(self, state: AgentState) -> None:
        self.store.save_state(state)
        self.state = state

    def predict(self, inputs: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
        """Run the active model on ``inputs`` (a mapping of input name to array, or one array)."""
        return self.predict_tracked(inputs)[1]

    def predict_tracked(
        self, inputs: Mapping[str, Any] | np.ndarray
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Like :meth:`predict`, and the prediction's id for :meth:`feedback`. The inference
        goes into the window's monitoring sketch when the model has a reference."""
        model = self._model
        if model is None:
            self.telemetry.record(None, ok=False)
            raise AgentError("no model installed yet: the agent has not completed an install")
        t0 = time.perf_counter()
        try:
            out = model.run(inputs)  # type: ignore[arg-type]
        except (InputError, ModelInputError):
            self.telemetry.count("input_errors")
            raise
        except Exception as e:
            self.telemetry.record((time.perf_counter() - t0) * 1e3, ok=False)
            self._after_request(model, ok=False, error=e)
            raise
        head = self.personal
        fleet = None
        if head is not None and head.serving and head.base_sha256 == model.sha256:
            try:
                fleet, out = out, head.apply(out)
            except (EdgeloopError, KeyError, ValueError) as e:  # serve the fleet head instead
                fleet = None
                self._drop_personal(f"personal head failed on an inference: {e}", "refusals")
        self.telemetry.record((time.perf_counter() - t0) * 1e3, ok=True)
        self._after_request(model, ok=True)
        return self.monitoring.observe(inputs, out, fleet), out

    # --- personalization (``_personal``) -----------------------------------------------------
    def personalize(self, config: PersonalConfig | None = None) -> PersonalHead:
        """Fit a personal head on this device's labelled samples (delayed feedback) for the
        active model (from the fleet head, pulled toward it), score it against the fleet model
        out of fold on the same labels, store it authenticated (``personal/head.json``, 0600)
        and serve with it only when it is better (``personal_status`` says which, and why).
        The model must be watched through its embedding (packed with a monitoring reference)."""
        model = self._model
        if model is None:
            raise AgentError("personalize: no model installed yet")
        view = self.monitoring.personal_view()
        if view is None or view["sha256"] != model.sha256:
            raise AgentError(
                "personalize: the active model is not watched through its embedding output, "
                "or has served nothing yet (pack it with a monitoring reference)"
            )
        x, y = view["x"], view["y"]
        head = fit_personal(
            x.reshape(len(y), -1) if len(y) else np.zeros((0, 1), np.float32), y,
            view["predicted"],
            n_classes=view["n_classes"], base_sha256=model.sha256,
            embedding=view["embedding"], output=view["output"],
            probabilities=view["probabilities"], fleet=view["fleet"], config=config,
        )
        self.store.write(self.store.personal_file, head.to_bytes(self._personal_key), 0o600)
        self.personal = head
        self.personal_status = head.why
        log.info("personalize: %s", head.why)
        self._personal_metrics()
        return head

    def maybe_personalize(self) -> PersonalHead | None:
        """Re-fit the personal head when ``personalize_every`` new labels arrived since the
        last fit; None when not due or not possible yet (too few labels, no embedding view)."""
        if self.personalize_every is None:
            return None
        labels = self.telemetry.totals.get("feedback", 0.0)
        if labels - self._labels_at_fit < self.personalize_every:
            return None
        try:
            head = self.personalize()
        except (DataError, AgentError) as e:
            log.info("personalize: not yet (%s)", e)
            return None
        self._labels_at_fit = labels
        return head

    def _personal_metrics(self) -> None:
        head = self.personal
        self.telemetry.gauge("personal_active", 1.0 if head is not None and head.serving else 0.0)
        if head is not None:
            self.telemetry.gauge("personal_gain", max(-1.0, min(1.0, head.gain)))

    def _drop_personal(self, reason: str, counter: str) -> None:
        """Forget the personal head (serve the fleet head) and remove its file."""
        log.warning("%s: serving with the fleet head", reason)
        self.personal = None
        self.personal_status = f"{reason}: serving with the fleet head"
        self.telemetry.count(f"personal_{counter}")
        self.telemetry.gauge("personal_active", 0.0)
        with contextlib.suppress(OSError):
            self.store.personal_file.unlink()

    def _load_personal(self, model: LoadedModel | None) -> None:
        """The stored head for the active model: refused when tampered, dropped when it was
        fitted on another base version."""
        self.personal = None
        path = self.store.personal_file
        if model is None or not path.exists():
            return
        try:
            self.personal = load_personal(path.read_bytes(), self._personal_key, model.sha256)
        except PersonalMismatch as e:
            self._drop_personal(f"{e}; dropped (the base version changed)", "drops")
            return
        except (SecurityError, OSError) as e:
            self._drop_personal(f"refused the stored personal head: {e}", "refusals")
            return
        self._personal_metrics()

    def feedback(self, prediction_id: str, label: int) -> bool:
        """A delayed label for an earlier prediction (its id from :meth:`predict_tracked` or
        the local endpoint); True when it matched a prediction of the active model. Counted
        into the window's realized accuracy and kept for fine-tuning."""
        matched = self.monitoring.feedback(prediction_id, label)
        self.telemetry.count("feedback" if matched else "feedback_unmatched")
        return matched

    def predict_with_version(
        self, inputs: Mapping[str, Any]
    ) -> tuple[str, int, dict[str, np.ndarray], str]:
        """Like :meth:`predict` for JSON callers: lists become arrays of the declared dtype."""
        model = self._model
        if model is not None:
            dtypes = {s.name: s.dtype for s in model.manifest.inputs}
            inputs = {
                k: np.asarray(v, dtype=dtypes[k]) if isinstance(v, list) and k in dtypes else v
                for k, v in inputs.items()
            }
        pid, out = self.predict_tracked(inputs)
        assert model is not None
        return model.name, model.version, out, pid

    def _after_request(self, model: LoadedModel, ok: bool, error: Exception | None = None) -> None:
        if not self.state.trial or model is not self._model:
            return
        with self._lock:
            self._trial_requests += 1
            self._trial_errors += 0 if ok else 1
            n, bad = self._trial_requests, self._trial_errors
            if n >= self.trial_min_requests and bad / n > self.trial_max_error_rate:
                self._fall_back(
                    f"{model.name}@{model.version} fell back: {bad} of {n} requests failed "
                    f"after the switch (last: {error})"
                )

    def _fall_back(self, reason: str) -> None:
        with self._lock:
            if not self.state.trial:
                return
            self.telemetry.count("rollbacks")
            self.last_error = reason
            self.degraded = True
            self._commit(fall_back(self.state, reason))
            self._activate()

    def check_trial(self) -> None:
        """Confirm a trial slot that served without tripping the error limit long enough."""
        with self._lock:
            if not self.state.trial or self._model is None:
                return
            wait = self.backoff.interval if self.confirm_after_s is None else self.confirm_after_s
            if time.monotonic() - self._switched_at >= wait:
                self._commit(confirm(self.state))

    def status(self) -> dict[str, Any]:
        m = self._model
        return {
            "device_id": self.device_id,
            "model": m.name if m else None,
            "version": m.version if m else None,
            "active_slot": self.state.active,
            "known_good_slot": self.state.known_good,
            "trial": self.state.trial,
            "health": self.health(),
            "last_error": self.last_error,
            "poll_error": self.poll_error,
            "telemetry": self.telemetry.metrics(),
        }

    def health(self) -> str:
        if self._model is None:
            return "failing"
        return "degraded" if self.degraded or self.state.trial else "ok"

    # --- installing ------------------------------------------------------------------------
    def install(
        self, data: bytes, assignment: Assignment, recipient: dict[str, Any] | None = None
    ) -> bool:
        """Install a downloaded bundle for ``assignment`` (sync); True when it is now serving.

        A bundle that fails verification or its self-test is remembered and not retried; a
        failed write (full disk) or load is retried at a later poll. Either way the model that
        was serving keeps serving.
        """
        with self._lock:
            d = decide(self.state, assignment)
            if d.action != "install" or d.slot is None:
                return self._act(d.action, d.slot, d.reason)
            digest = sha256_bytes(data)
            if digest != assignment.sha256 or len(data) != assignment.length:
                # the download, not the release, is bad: keep serving and fetch it again later
                self.telemetry.count("corrupt_downloads")
                self.last_error = (
                    f"download of {assignment.target!r} is corrupt: sha256 {digest[:16]} and "
                    f"{len(data)} bytes, expected {assignment.sha256[:16]} and {assignment.length}"
                )
                return False
            try:
                state, model = self.slots.install(self.state, d.slot, data, assignment, recipient)
            except SelfTestError as e:  # a verified bundle that fails: the release is bad
                self.telemetry.count("selftest_failures")
                self.last_error = f"{assignment.model}@{assignment.version} refused: {e}"
                self.degraded = True
                self._commit(record_failure(self.store.load_state(), assignment.sha256, str(e)))
                return False
            except SecurityError as e:
                # refused, but not remembered as a failed release: the data key comes over an
                # unsigned channel (/v1/keys), so one flipped bit there must not block the
                # release forever; the next poll retries, backing off (``apply``)
                self.telemetry.count("rejected")
                self.last_error = f"{assignment.model}@{assignment.version} refused: {e}"
                self.degraded = True
                self.state = self.store.load_state()
                self._retry_install = True
                return False
            except (EdgeloopError, OSError) as e:
                # a key that did not decrypt a verified bundle, a full disk: retried at a later
                # poll, backing off (``apply``), never remembered as a failed release
                self.telemetry.count("install_failures")
                self.last_error = f"install of {assignment.model}@{assignment.version} failed: {e}"
                self.state = self.store.load_state()
                self._retry_install = True
                return False
            self.state = state
            self.degraded = False
            self.last_error = None
            self.telemetry.count("installs")
            self._set_model(model)
            return True

    def _act(self, action: str, slot: str | None, reason: str) -> bool:
        if action == "switch" and slot is not None:
            return self.switch(slot)
        if action == "refuse":
            self.last_error = reason
            self.telemetry.count("rejected")
        return action == "none" and slot is not None

    def switch(self, slot: str) -> bool:
        """Switch to a slot that already holds a verified bundle (a rollback: no download)."""
        with self._lock:
            info = self.state.slot(slot)
            if info is None:
                raise AgentError(f"slot {slot} is empty; nothing to switch to")
            try:
                model = self.slots.load(slot, info)
                self.slots.selftest(model)
            except (EdgeloopError, OSError) as e:
                self.last_error = f"slot {slot} failed to load for a switch: {e}"
                self.telemetry.count("load_failures")
                return False
            trial = slot != self.state.known_good
            self._commit(switch_to(self.state, slot, trial=trial))
            self.telemetry.count("switches")
            self._set_model(model)
            return True

    # --- the server --------------------------------------------------------------------------
    def _client(self) -> FleetClient:
        if self.server_url is None:
            raise AgentError("this agent has no server URL; it can only serve what it holds")
        loop = asyncio.get_running_loop()
        if self._own_http and (self._http is None or self._http_loop is not loop):
            # a client's connections belong to the event loop that opened them
            self._http = httpx.AsyncClient(timeout=30.0, verify=self.pinned.verify)
            self._http_loop = loop
        assert self._http is not None
        return FleetClient(self.server_url, self._http, self.signing_key)

    async def enroll(self) -> str:
        if self.identity is not None:
            return str(self.identity["device_id"])
        if not self.enroll_token:
            raise AgentError("this device is not enrolled; pass an enrollment token")
        self.pinned.may_enroll()
        profile = await asyncio.to_thread(self.profile)
        request = EnrollRequest(
            token=self.enroll_token,
            signing_key=public_hex(self.signing_key),
            encryption_key=public_hex(self.encryption_key),
            profile=profile,
            agent_version=AGENT_VERSION,
            name=self.name,
            labels=self.labels,
            agent_build=package_build_hash(),
        )
        enrollment = await self._client().enroll(request)
        if self.pinned.provisioned:  # the answer must agree with the pinned trust
            await asyncio.to_thread(self.pinned.check_enrollment, enrollment, self._refresh_root)
        else:  # trust on first use (insecure_first_use): believe the first answer
            self.store.write(
                self.store.tuf_dir / "root.json", json.dumps(enrollment.tuf_root).encode(), None
            )
        identity = enrollment.to_dict()
        identity.pop("tuf_root", None)
        identity["server_url"] = self.server_url
        self.store.save_identity(identity)
        self.identity = identity
        self.backoff.interval = float(enrollment.poll_interval_s)
        return enrollment.device_id

    def _tuf(self) -> Any:
        """An UpdateClient on this device's TUF state (pinned CA; shared fetcher if any)."""
        from edgeloop.update import UpdateClient

        assert self.server_url is not None
        base = self.server_url.rstrip("/")
        ids = self.identity or {}
        return UpdateClient(
            base,
            self.store.tuf_dir.joinpath("root.json").read_bytes(),
            self.store.tuf_dir,
            metadata_url=base + str(ids.get("tuf_metadata_url", "/tuf/metadata/")),
            targets_url=base + str(ids.get("tuf_targets_url", "/tuf/targets/")),
            fetcher=self.fetcher,
            verify=self.pinned.verify,
        )

    def _refresh_root(self) -> bytes:
        """Walk the TUF root chain from the trusted root; the newest verified root's bytes."""
        with self._tuf() as client:
            return bytes(client.trusted_root())

    def director_keys(self) -> dict[str, Any]:
        """Keys that may sign this device's assignments (named in its newest verified root)."""
        return self.pinned.director_keys(self.trust().director_keys, self.identity)

    def _verify(self, envelope: Mapping[str, Any], refreshed: bool = False) -> Assignment:
        from datetime import datetime, timezone

        sigs = envelope.get("signatures") if isinstance(envelope, Mapping) else None
        kid = sigs[0].get("keyid") if isinstance(sigs, list) and sigs else None
        keys = self.director_keys()
        key = keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            if not refreshed and self.server_url is not None:
                # a director key rotated since: a new root names it (TUF verifies the chain)
                self._refresh_root()
                return self._verify(envelope, refreshed=True)
            raise SignatureError(
                f"assignment signed by key {str(kid)[:16]}, which the trusted root does not "
                f"name as a director key ({sorted(k[:16] for k in keys)})"
            )
        return verify_assignment(
            envelope, key, device_id=self.device_id, now=datetime.now(timezone.utc)
        )

    def held_assignment(self) -> tuple[str, Assignment] | None:
        """The signed assignment this device holds and may still confirm by its hash: verified,
        and not yet half-way through its lifetime (past that, the server signs a new one)."""
        from datetime import datetime, timezone

        if self._held is None:
            return None
        a = self._held[1]
        issued, expires = parse_time(a.issued_at), parse_time(a.expires_at)
        if datetime.now(timezone.utc) >= issued + (expires - issued) / 2:
            return None
        return self._held

    def checkin_body(self) -> CheckIn:
        held = self.held_assignment()
        return CheckIn(
            agent_version=AGENT_VERSION,
            installed=_installed(self.state.current),
            known_good=_installed(self.state.slot(self.state.known_good)),
            health=self.health(),
            last_error=self.last_error,
            agent_build=package_build_hash(),
            assignment_sha256=held[0] if held else None,
        )

    def report(self) -> DeviceReport:
        """The telemetry window as a report, with the window's monitoring sketch (both reset)."""
        m = self._model
        report = self.telemetry.report(
            self.device_id or "unenrolled",
            m.name if m else None,
            m.version if m else None,
            agent_version=AGENT_VERSION,
            resources=process_resources(),
        )
        sketch = self.monitoring.take_sketch()
        return report if sketch is None else dataclasses.replace(report, sketch=sketch)

    async def poll_once(self) -> float:
        """One cycle: enroll if needed, report, check in, act. Returns seconds to the next one."""
        try:
            device_id = await self.enroll()
            client = self._client()
            self.check_trial()  # a trial that served since the last poll without failing
            await asyncio.to_thread(self.maybe_personalize)  # its gain goes in this report
            report = self.report()
            try:
                await client.telemetry(report)
            except FleetError as e:
                if report.sketch is None or isinstance(e, AuthError):
                    raise
                # the server refused the sketch (no reference for this version, ...): the
                # window's telemetry still goes, without it
                self.telemetry.count("sketches_refused")
                self.last_error = f"sketch refused: {e}"
                await client.telemetry(dataclasses.replace(report, sketch=None))
            if self._revocation_due():
                await self.enforce_revocation()
            response = await client.checkin(device_id, self.checkin_body())
            self.backoff.interval = float(response.poll_interval_s)
            assignment = await self._assignment(response)
            if assignment is not None:
                before = self.checkin_body()
                await self.apply(assignment)
                if self.checkin_body() != before:  # tell the server now, not a poll later
                    await client.checkin(device_id, self.checkin_body())
            if self.participant is not None:
                await self.federated_once(device_id)
        except RETRYABLE as e:
            self.poll_error = f"poll failed: {type(e).__name__}: {e}"
            self.telemetry.count("poll_failures")
            return self.backoff.failed()
        self.poll_error = None
        return self.backoff.succeeded()

    def _recent_requests(self) -> float:
        """Inferences a minute since the last federated step (the idle test)."""
        now, total = time.monotonic(), float(self.telemetry.totals.get("requests", 0.0))
        before, self._requests_at = self._requests_at, (now, total)
        if before is None:
            return float("inf")  # nothing to judge by yet: not idle
        return (total - before[1]) * 60.0 / max(now - before[0], 1.0)

    async def federated_once(self, device_id: str) -> str:
        """Send this device's node key binding (once), ask the fleet server for an open
        federated run, and let the participant join, stay or leave under the device's policy.
        A device that cannot join (no Flower) says why (``federated_status``, the log, a
        telemetry count) and carries on."""
        part = self.participant
        if part is None:
            return self._federated("not taking part in federated runs", None)
        why = part.unavailable()
        if why is not None:
            return self._federated(f"cannot join federated runs: {why}",
                                   "federated_cannot_join")
        client = self._client()
        if self._binding_sent != device_id:
            await client.federated_node_key(device_id, part.binding(device_id))
            self._binding_sent = device_id
        run = await client.federated_poll(device_id)
        view = self.monitoring.personal_view()
        x = view["x"] if view is not None else np.zeros((0, 1), np.float32)
        y = view["y"] if view is not None else np.zeros(0, np.int64)
        status = await asyncio.to_thread(
            part.step, run, labels=self.labels, x=x, y=y,
            recent_requests=self._recent_requests())
        self.telemetry.gauge("federated_joined", 1.0 if part.joined else 0.0)
        return self._federated(status, "federated_joins" if status.startswith("joined")
                               else None)

    def _federated(self, status: str, counter: str | None) -> str:
        if status != self.federated_status:
            log.info("federated: %s", status)
        self.federated_status = status
        if counter is not None:
            self.telemetry.count(counter)
        return status

    async def _assignment(self, response: CheckInResponse) -> Assignment | None:
        """The check-in's assignment: a new signed one (verified, then held), the held one
        when the server answered ``unchanged``, or None when nothing is assigned."""
        if response.assignment is not None:
            assignment = await asyncio.to_thread(self._verify, response.assignment)
            self._held = (payload_sha256(response.assignment), assignment)
            return assignment
        held = self.held_assignment()
        if response.unchanged and held is not None:
            return held[1]
        if response.unchanged:  # the server confirmed a hash this device did not send
            raise FleetError("check-in answered unchanged, but this device holds no assignment")
        self._held = None
        return None

    def listed(self) -> dict[str, Any]:
        """The release side's current signed targets (TUF refresh): path -> TargetInfo."""
        with self._tuf() as client:
            out: dict[str, Any] = client.listed()
        self._listing_checked = time.monotonic()
        return out

    async def enforce_revocation(self) -> None:
        """Stop running a version the signed targets no longer list (``_revocation``)."""
        await enforce_revocation(self)

    async def apply(self, assignment: Assignment) -> bool:
        """Act on a verified assignment: nothing, a switch, or a download and install.

        A switch (a rollback to the other slot) happens only to a version the release side's
        signed targets still list: the director alone cannot bring back a revoked version.
        """
        d = decide(self.state, assignment)
        if d.action == "switch":
            listed = await asyncio.to_thread(self.listed)
            if assignment.sha256 not in {t.sha256 for t in listed.values()}:
                reason = (
                    f"{assignment.model}@{assignment.version} is not in the signed targets "
                    "(revoked): not switching to it"
                )
                with self._lock:
                    self._commit(record_failure(self.state, assignment.sha256, reason))
                return await asyncio.to_thread(self._act, "refuse", None, reason)
        if d.action != "install":
            return await asyncio.to_thread(self._act, d.action, d.slot, d.reason)
        assert self.identity is not None and self.server_url is not None
        # the release side's signed targets first: no key is asked for a target they do not list
        await asyncio.to_thread(check_listed, self._tuf(), assignment)
        recipient = await self._client().recipient(str(self.device_id), assignment.target)
        data = await asyncio.to_thread(self.download, assignment, recipient)
        self._retry_install = False
        if await asyncio.to_thread(self.install, data, assignment, recipient):
            return True
        if self._retry_install:  # a poll failure: the caller backs off before the next try
            raise AgentError(str(self.last_error))
        return False

    def download(self, assignment: Assignment, recipient: dict[str, Any] | None) -> bytes:
        """The assigned bundle's bytes: rebuilt from the delta the director picked (when the
        assignment names one), else downloaded in full (also when the delta fails any check).
        Counts the bytes."""
        current = self.state.current
        if (
            self.deltas
            and assignment.delta is not None
            and self._model is not None
            and current is not None
            and current.model == assignment.model
            and current.sha256 != assignment.sha256
        ):
            active = str(self.state.active)
            highest = self.state.highest.get(assignment.model)
            result = fetch_by_delta(
                self._tuf(),
                assignment,
                current.sha256,
                lambda: self._active_bundle(active),
                self.trust(),
                self.encryption_key,
                recipient,
                None if assignment.rollback else highest,
            )
            if result.downloaded:
                self.telemetry.count("bytes_downloaded", result.downloaded)
                self.telemetry.count("delta_bytes_downloaded", result.downloaded)
            if result.bundle is not None:
                self.telemetry.count("delta_updates")
                return result.bundle
            if result.error is not None:
                self.telemetry.count("delta_fallbacks")
                self.last_error = f"{result.error}; fetching the full bundle"
        data = fetch_target(self._tuf(), assignment)
        self.telemetry.count("bytes_downloaded", len(data))
        return data

    def _active_bundle(self, slot: str) -> tuple[bytes, bytes]:
        """The bundle of ``slot`` and its model, decrypted in memory (a delta's base)."""
        from edgeloop._io import read_bytes
        from edgeloop.bundle import open_bundle

        path = self.store.slot_path(slot)
        _, model, _ = open_bundle(
            path, self.trust(), self.encryption_key, recipient=self.slots.stored_recipient(slot)
        )
        return read_bytes(path, f"slot {slot} bundle"), model

    def _revocation_due(self) -> bool:
        last = self._listing_checked
        return last is None or time.monotonic() - last >= self.revocation_check_s

    async def run(self, stop: asyncio.Event | None = None, duration_s: float | None = None) -> None:
        """Poll until ``stop`` is set or ``duration_s`` passed (forever when neither is given)."""
        stop = stop or asyncio.Event()
        end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set():
            delay = await self.poll_once()
            if end is not None:
                delay = min(delay, max(end - time.monotonic(), 0.0))
                if delay <= 0:
                    return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def aclose(self) -> None:
        """Close the agent's own HTTP client (a shared one belongs to its owner)."""
        if self._own_http and self._http is not None:
            if self._http_loop is asyncio.get_running_loop():
                await self._http.aclose()
            self._http = None

    def poll_sync(self) -> float:
        """One poll from synchronous code (its own event loop, closed afterwards)."""

        async def once() -> float:
            try:
                return await self.poll_once()
            finally:
                await self.aclose()

        return asyncio.run(once())

    def close(self) -> None:
        if self.participant is not None:
            self.participant.stop()  # a SuperNode child process never outlives its agent
        with self._lock:
            if self.state.trial and self._model is not None and not self.degraded:
                # a clean exit is not a crash: this start does not count against the trial
                # (``edgeloop agent --once`` run repeatedly must not abandon a fresh install)
                self._commit(clean_exit(self.state))
        self._set_model(None)
