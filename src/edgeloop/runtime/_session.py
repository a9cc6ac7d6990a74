"""``Session``: one ONNX model on ONNX Runtime, with provider choice and checked inputs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeloop.artifacts import Manifest, TensorSpec, sha256_bytes, sha256_file
from edgeloop.errors import (
    EdgeloopError,
    FileError,
    InputError,
    IntegrityError,
    ModelError,
    ModelFormatError,
)
from edgeloop.runtime._feeds import ORT_DTYPES, validate_feeds
from edgeloop.runtime._providers import resolve_providers

__all__ = ["GRAPH_OPTIMIZATION", "Session", "check_graph_optimization"]

GRAPH_OPTIMIZATION: dict[str, ort.GraphOptimizationLevel] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def check_graph_optimization(level: str) -> None:
    """Refuse a graph optimization level that is not one of ``GRAPH_OPTIMIZATION``."""
    if level not in GRAPH_OPTIMIZATION:
        raise InputError(
            f"graph_optimization {level!r} is not one of {', '.join(GRAPH_OPTIMIZATION)}"
        )


def _last_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[-1] if text else type(e).__name__


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int | str) else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, ORT_DTYPES.get(arg.type, arg.type), shape)


class Session:
    """An ONNX model loaded on ONNX Runtime.

    ``providers=None`` picks the best installed execution providers (accelerators first, CPU
    last); ``session.providers`` says which ONNX Runtime actually used and
    ``session.provider_fallback`` why an accelerator was dropped, if one was. ``threads`` sets
    the intra-op thread count (operators run one at a time). ``integrity_check`` is called
    before serving, at most every ``integrity_interval_s`` seconds; it raises
    :class:`IntegrityError` to refuse. ``model_sha256`` may be given with model bytes whose hash
    the caller has already verified. ``profile`` (a file name prefix) turns on ONNX Runtime's
    per-operator profiler; :meth:`end_profiling` stops it and names the JSON trace written.
    """

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        graph_optimization: str = "all",
        integrity_check: Callable[[], None] | None = None,
        integrity_interval_s: float = 60.0,
        model_sha256: str | None = None,
        profile: str | Path | None = None,
    ) -> None:
        check_graph_optimization(graph_optimization)
        if threads is not None and threads < 1:
            raise InputError(f"threads must be a positive integer, got {threads}")
        source: str | bytes
        if isinstance(model, bytes | bytearray):
            source = bytes(model)
            self.path: Path | None = None
            # A caller that already holds a verified hash of these bytes (a bundle's signed
            # manifest, whose ciphertext hash was checked before decryption) passes it in and
            # saves hashing the model a second time on the load path.
            self.model_sha256 = model_sha256 or sha256_bytes(source)
            label = "<model bytes>"
        else:
            self.path = Path(model)
            if self.path.is_dir():
                raise FileError(f"model {str(self.path)!r} is a directory, expected an ONNX file")
            if not self.path.exists():
                raise FileError(f"model {str(self.path)!r} does not exist")
            self.model_sha256 = sha256_file(self.path)
            source = str(self.path)
            label = str(self.path)
        self.threads = threads
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = GRAPH_OPTIMIZATION[graph_optimization]
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        if profile is not None:
            options.enable_profiling = True
            options.profile_file_prefix = str(profile)
        wanted = resolve_providers(providers, ort.get_available_providers())
        self.provider_fallback: str | None = None
        self._sess = self._load(source, label, options, wanted)
        self.providers: list[str] = list(self._sess.get_providers())
        dropped = [p for p in wanted if p not in self.providers]
        if dropped and self.provider_fallback is None:
            self.provider_fallback = f"ONNX Runtime did not enable {', '.join(dropped)}"
        self.inputs: tuple[TensorSpec, ...] = tuple(_spec(a) for a in self._sess.get_inputs())
        self.outputs: tuple[TensorSpec, ...] = tuple(_spec(a) for a in self._sess.get_outputs())
        self.manifest: Manifest | None = None  # set by edgeloop.bundle for a verified bundle
        self._integrity_check = integrity_check
        self._integrity_interval_s = integrity_interval_s
        self._last_check = -math.inf

    def _load(
        self, source: str | bytes, label: str, options: ort.SessionOptions, wanted: list[str]
    ) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(source, sess_options=options, providers=wanted)
        except Exception as e:
            first = e
        if wanted != ["CPUExecutionProvider"]:
            # an accelerator that failed to start: serve on the CPU and say why
            try:
                sess = ort.InferenceSession(
                    source, sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as e:
                first = e
            else:
                self.provider_fallback = f"{wanted[0]} failed: {_last_line(first)}"
                return sess
        raise ModelFormatError(
            f"{label!r} is not a valid ONNX model for ONNX Runtime: {_last_line(first)}"
        ) from first

    def end_profiling(self) -> Path:
        """Stop the profiler started with ``profile=`` and return its JSON trace file."""
        name = self._sess.end_profiling()
        if not name:
            raise InputError("this session was not started with profile=")
        return Path(name)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def check_integrity(self, force: bool = False) -> None:
        """Run the integrity check if one is set and it is due (or ``force``)."""
        if self._integrity_check is None:
            return
        now = time.monotonic()
        if not force and now - self._last_check < self._integrity_interval_s:
            return
        try:
            self._integrity_check()
        except EdgeloopError:
            raise
        except Exception as e:
            raise IntegrityError(f"integrity check failed: {_last_line(e)}") from e
        self._last_check = now

    def validate(self, feeds: Any) -> dict[str, np.ndarray]:
        """The feeds, converted and checked against the model's inputs (names, dtypes, shapes)."""
        return validate_feeds(self.inputs, feeds)

    def run(
        self, feeds: Mapping[str, Any] | np.ndarray | Any, outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run once: a mapping of input name to array (or one array) -> output name to array."""
        self.check_integrity()
        checked = self.validate(feeds)
        return self.run_unchecked(checked, outputs)

    def run_unchecked(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run feeds that :meth:`validate` already checked (the benchmark's hot loop)."""
        names = list(outputs) if outputs is not None else self.output_names
        try:
            values = self._sess.run(names, dict(feeds))
        except Exception as e:
            raise ModelError(f"ONNX Runtime failed to run the model: {_last_line(e)}") from e
        return dict(zip(names, (np.asarray(v) for v in values), strict=True))

    __call__ = run

    def describe(self) -> dict[str, Any]:
        return {
            "model": str(self.path) if self.path else None,
            "sha256": self.model_sha256,
            "providers": self.providers,
            "provider_fallback": self.provider_fallback,
            "threads": self.threads,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "<bytes>"
        return f"Session({where!r}, providers={self.providers})"
