"""On-device monitoring in the agent: every inference goes into the window's sketch.

The active model's signed manifest carries its monitoring reference (``Manifest.monitor``);
:class:`Monitoring` keeps one :class:`~edgeloop.monitor.sketch.WindowSketch` against it and a
:class:`~edgeloop.monitor.sketch.FeedbackStore` for delayed labels. Each inference adds its
input (or the embedding output, for an embedding view) and its class output to the sketch and
gets a prediction id; ``feedback(id, label)`` counts a delayed label into the window; each
telemetry report takes the window's sketch (a few kB) and starts the next one.

The cost per inference is the sketch's fixed number of numpy operations on ``features x bins``
values plus one projection for wide inputs; memory is the sketch (fixed by the reference) and
the bounded feedback store. A model without a reference is not watched (ids are still given).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeloop.artifacts import Manifest
from edgeloop.errors import EdgeloopError, MonitorError
from edgeloop.monitor.sketch import FeedbackStore, MonitorReference, WindowSketch

__all__ = ["Monitoring"]

_KEEP_VALUES = 4096  # inputs up to this many values are kept with their delayed labels


class _Watch:
    """The reference, the window and the feedback store of one installed version."""

    def __init__(self, sha256: str, reference: MonitorReference, manifest: Manifest) -> None:
        self.sha256 = sha256
        self.reference = reference
        self.sketch = WindowSketch(reference)
        self.feedback = FeedbackStore(len(reference.classes), capacity=10_000,
                                      max_input_bytes=4 << 20, keep_labelled=2_000)
        proj = reference.projection
        self.embedding = proj.output if proj is not None and proj.source == "embedding" else None
        self.input = manifest.inputs[0].name if manifest.inputs else None
        self.output: str | None = None  # the class output, found on the first inference
        self.probabilities = True  # whether that output holds probabilities (else logits)


class Monitoring:
    """Sketching and delayed labels for the agent's active model. Thread-safe."""

    def __init__(self, clock: Any = None) -> None:
        import time

        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._watch: _Watch | None = None
        self.errors = 0  # inferences the sketch could not take (shape mismatch): counted
        self.last_error: str | None = None

    def activate(self, sha256: str | None, manifest: Manifest | None) -> None:
        """Watch the model with this bundle hash (None: nothing); a model already watched
        keeps its window."""
        with self._lock:
            if self._watch is not None and self._watch.sha256 == sha256:
                return
            self._watch = None
            if sha256 is None or manifest is None or manifest.monitor is None:
                return
            try:
                ref = MonitorReference.from_dict(manifest.monitor)
            except EdgeloopError as e:  # signed, so only a build bug gets here: say it
                self.last_error = f"monitoring reference of {manifest.name}: {e}"
                return
            self._watch = _Watch(sha256, ref, manifest)

    @property
    def active(self) -> bool:
        return self._watch is not None

    def observe(self, inputs: Mapping[str, Any] | np.ndarray, outputs: Mapping[str, Any],
                fleet: Mapping[str, Any] | None = None) -> str:
        """Add one inference (a batch) to the window; return its prediction id. ``outputs``:
        what was served; ``fleet``: the fleet model's own outputs when a personal head
        replaced its class output (kept with a labelled sample, for personalization)."""
        pid = secrets.token_hex(8)
        w = self._watch
        if w is None:
            return pid
        try:
            x = self._x(w, inputs, outputs)
            out = self._class_output(w, outputs)
            with self._lock:
                if w.sketch.start is None:
                    w.sketch.start = self._clock()
                p = w.sketch.update(x, out)
                w.sketch.end = self._clock()
            if out is not None and len(out) == 1:
                probs = np.asarray(out, dtype=np.float64).reshape(1, -1)
                p0 = None if p is None or not np.isfinite(p[0]) else float(p[0])
                if np.all(np.isfinite(probs)):
                    # the input is kept (bounded) so a labelled sample can fine-tune the head
                    xs = np.asarray(x)
                    keep = xs.reshape(-1) if xs.size <= _KEEP_VALUES else None
                    own = out if fleet is None else self._class_output(w, fleet)
                    w.feedback.record(pid, int(probs.argmax()), p0, keep,
                                      None if keep is None or own is None else own[0])
        except (EdgeloopError, ValueError, TypeError) as e:
            self.errors += 1
            self.last_error = f"sketch: {e}"
        return pid

    def _x(self, w: _Watch, inputs: Mapping[str, Any] | np.ndarray,
           outputs: Mapping[str, Any]) -> np.ndarray:
        if w.embedding is not None:
            return np.asarray(outputs[w.embedding])
        if isinstance(inputs, Mapping):
            key = w.input if w.input is not None and w.input in inputs else next(iter(inputs))
            return np.asarray(inputs[key])
        return np.asarray(inputs)

    def _class_output(self, w: _Watch, outputs: Mapping[str, Any]) -> np.ndarray | None:
        if w.output is None:
            k = len(w.reference.classes)
            for name, v in outputs.items():
                a = np.asarray(v)
                if name != w.embedding and a.ndim >= 1 and a.reshape(len(a), -1).shape[1] == k:
                    w.output = name
                    rows = a.reshape(len(a), -1).astype(np.float64)
                    w.probabilities = bool(
                        np.all((rows >= 0) & (rows <= 1))
                        and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3)
                    )
                    break
            else:
                return None
        a = np.asarray(outputs[w.output])
        return a.reshape(len(a), -1)

    def feedback(self, prediction_id: str, label: int) -> bool:
        """A delayed label for a prediction of the watched model; False when the id is unknown
        (never recorded, evicted, labelled already, or made by another version)."""
        w = self._watch
        if w is None:
            raise MonitorError("feedback: the active model has no monitoring reference")
        fb = w.feedback.feedback(prediction_id, label)
        if fb is None:
            return False
        with self._lock:
            w.sketch.add_feedback(fb.predicted, fb.label, fb.p_correct)
        return True

    def take_sketch(self) -> dict[str, Any] | None:
        """The window's sketch as JSON data, and start the next window (None when unwatched
        or empty)."""
        with self._lock:
            w = self._watch
            if w is None:
                return None
            sketch, w.sketch = w.sketch, WindowSketch(w.reference)
        if sketch.n == 0 and sketch.fb_n == 0:
            return None
        return sketch.to_dict()

    def labelled_samples(self) -> tuple[np.ndarray, np.ndarray] | None:
        w = self._watch
        return None if w is None else w.feedback.labelled_samples()

    def personal_view(self) -> dict[str, Any] | None:
        """What personalization needs from the watched model: its labelled embedding samples
        with the served predictions and the fleet model's class output for each (``fleet``,
        None unless every sample has it), the embedding and class output names, the class
        count and whether the class output holds probabilities. None when the model is not
        watched through its embedding or has served nothing yet."""
        w = self._watch
        if w is None or w.embedding is None or w.output is None:
            return None
        x, y, predicted, fleet = w.feedback.labelled_with_scores()
        return {
            "sha256": w.sha256, "x": x, "y": y, "predicted": predicted, "fleet": fleet,
            "embedding": w.embedding, "output": w.output,
            "n_classes": len(w.reference.classes), "probabilities": w.probabilities,
        }
