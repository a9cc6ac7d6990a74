"""The artifacts every stage of the loop shares.

Each is a frozen dataclass with ``to_dict``/``from_dict`` and a ``schema_version``. Fields a
newer edgeloop wrote and this one does not know are kept in ``extra`` and written back, so an
old device can read and forward a newer file (python-tuf keeps ``unrecognized_fields`` the same
way). Lineage is a tuple of :class:`LineageRef`: the hash of every input an artifact came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from edgeloop._io import atomic_write_bytes
from edgeloop.errors import FileError, InputError

__all__ = [
    "Artifact",
    "DeviceProfile",
    "DeviceReport",
    "DriftReport",
    "LineageRef",
    "Manifest",
    "ModelCard",
    "PassSpec",
    "Recipe",
    "RolloutControls",
    "RolloutPlan",
    "TensorSpec",
    "parse_utc_offset",
    "parse_window",
    "sha256_bytes",
    "sha256_file",
]

A = TypeVar("A", bound="Artifact")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as e:
        raise FileError(f"cannot read {str(path)!r}: {e.strerror or e}") from e
    return h.hexdigest()


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Artifact):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


def _from_jsonable(tp: Any, value: Any) -> Any:
    """Rebuild a field of declared type ``tp`` from JSON data (artifacts, tuples, optionals)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _from_jsonable(non_none[0], value)
        return value
    if isinstance(tp, type) and issubclass(tp, Artifact):
        return tp.from_dict(value)
    if origin is tuple:
        inner = args[0] if args else Any
        return tuple(_from_jsonable(inner, v) for v in value)
    if origin is dict and len(args) == 2:
        return {k: _from_jsonable(args[1], v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints`` once per class: it re-evaluates every annotation each call."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


@dataclass(frozen=True)
class Artifact:
    """Base of every artifact: JSON round-trip, schema version, unknown fields kept."""

    SCHEMA_VERSION: ClassVar[int] = 1
    KIND: ClassVar[str] = "artifact"
    # optional fields added later, left out of the JSON while None: what older readers (and
    # older signed manifests) see stays byte-for-byte the same
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND, "schema_version": self.SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                value = getattr(self, f.name)
                if value is None and f.name in self.OMIT_NONE:
                    continue
                out[f.name] = _to_jsonable(value)
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    @classmethod
    def from_dict(cls: type[A], data: Mapping[str, Any]) -> A:
        if not isinstance(data, Mapping):
            raise InputError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        kind = data.get("kind", cls.KIND)
        if kind != cls.KIND:
            raise InputError(f"expected a {cls.KIND!r} artifact, got kind {kind!r}")
        version = data.get("schema_version", cls.SCHEMA_VERSION)
        if not isinstance(version, int) or version < 1:
            raise InputError(
                f"{cls.__name__}: schema_version must be a positive int, got {version!r}"
            )
        hints = _type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.name != "extra"
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise InputError(f"{cls.__name__}: missing field(s) {', '.join(missing)}")
        kwargs: dict[str, Any] = {}
        for n in names & set(data):
            try:
                kwargs[n] = _from_jsonable(hints[n], data[n])
            except (AttributeError, TypeError, ValueError) as e:  # a list where a dict belongs
                raise InputError(
                    f"{cls.__name__}: field {n} {data[n]!r:.40} has the wrong shape ({e})"
                ) from e
        extra = {k: v for k, v in data.items() if k not in names | {"kind", "schema_version"}}
        try:
            return cls(**kwargs, extra=extra)
        except (TypeError, ValueError) as e:
            raise InputError(f"{cls.__name__}: {e}") from e

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls: type[A], text: str | bytes) -> A:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise InputError(f"{cls.__name__}: not valid JSON ({e})") from e
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file, then rename)."""
        p = Path(path)
        atomic_write_bytes(p, (self.to_json() + "\n").encode())
        return p

    @classmethod
    def load(cls: type[A], path: str | Path) -> A:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise FileError(f"{cls.KIND} file {str(p)!r} does not exist") from e
        except (OSError, UnicodeDecodeError) as e:
            raise FileError(f"cannot read {cls.KIND} file {str(p)!r}: {e}") from e
        return cls.from_json(text)

    def digest(self) -> str:
        """sha256 of the canonical JSON form: what lineage refers to."""
        return sha256_bytes(self.to_json(indent=None).encode())


@dataclass(frozen=True)
class TensorSpec(Artifact):
    """One model input or output. ``shape`` uses None (or a name) for dynamic axes."""

    KIND: ClassVar[str] = "tensor_spec"
    name: str
    dtype: str
    shape: tuple[int | str | None, ...] = ()


@dataclass(frozen=True)
class LineageRef(Artifact):
    """A hash of one thing an artifact came from.

    ``role`` is one of: source_model, recipe, calibration_data, dataset, evaluation,
    teacher_model, federated_round, bundle, parent_version, hybrid_schedule; a healed version
    adds monitor_reference, monitor_alert, reference_data and autoheal_policy.
    """

    KIND: ClassVar[str] = "lineage_ref"
    role: str
    sha256: str
    name: str | None = None
    uri: str | None = None


@dataclass(frozen=True)
class DeviceProfile(Artifact):
    """What a target can do: measured on this machine or a built-in published profile."""

    KIND: ClassVar[str] = "device_profile"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"kernels"})
    name: str
    source: str  # "measured" or "builtin"
    arch: str  # x86_64, aarch64, armv7l ...
    cpu_model: str
    cores_physical: int | None = None
    cores_logical: int | None = None
    isa: tuple[str, ...] = ()  # e.g. avx2, avx512f, avx512_vnni, amx_int8, neon, asimddp, fp16
    memory_total_mb: float | None = None
    memory_available_mb: float | None = None
    fp32_gops: float | None = None
    int8_gops: float | None = None
    mem_bandwidth_gbps: float | None = None
    power_w: float | None = None  # measured average (RAPL) or published typical
    power_source: str = "unknown"  # "rapl", "published", "unknown"
    os: str | None = None
    runtime: dict[str, str] = field(default_factory=dict)  # onnxruntime version, providers
    providers: tuple[str, ...] = ()
    references: tuple[str, ...] = ()  # where published figures come from
    notes: str = ""
    # measured kernel figures the cost model reads (edgeloop.analysis.estimate): "FAMILY@MACS"
    # -> GOPS for the kernel families fp32_gemm, fp32_conv, fp32_dwconv, int8_gemm, int8_conv
    # at a few sizes, plus op_overhead_us, run_overhead_us, elementwise_gbps, runtime_bytes.
    # None (left out of the JSON) for a profile written before they were measured.
    kernels: dict[str, float] | None = None


@dataclass(frozen=True)
class PassSpec(Artifact):
    KIND: ClassVar[str] = "pass"
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe(Artifact):
    """An ordered list of optimization passes, e.g. prune -> fine-tune -> int8."""

    KIND: ClassVar[str] = "recipe"
    name: str
    passes: tuple[PassSpec, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ModelCard(Artifact):
    """What a model is, what it was measured to do, and where it came from."""

    KIND: ClassVar[str] = "model_card"
    name: str
    sha256: str  # of the model file this card describes
    format: str = "onnx"  # onnx, ort, torch
    task: str = "classification"  # classification, anomaly, regression, embedding
    architecture: str | None = None
    size_bytes: int | None = None
    params: int | None = None
    macs: int | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    labels: tuple[str, ...] = ()
    dataset: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: tuple[LineageRef, ...] = ()
    recipe: Recipe | None = None
    created_at: str | None = None  # ISO 8601 UTC
    description: str = ""


@dataclass(frozen=True)
class Manifest(Artifact):
    """The signed table of contents of a bundle (see ``edgeloop.bundle``)."""

    KIND: ClassVar[str] = "manifest"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"monitor"})
    name: str
    version: int
    model_card: ModelCard
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)  # part -> {sha256, length, ...}
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    selftest: dict[str, Any] = field(default_factory=dict)
    requirements: dict[str, Any] = field(default_factory=dict)
    encryption: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    # the signed monitoring reference (``edgeloop.monitor.sketch.MonitorReference.to_dict``),
    # or None for a bundle packed without one
    monitor: dict[str, Any] | None = None


@dataclass(frozen=True)
class RolloutPlan(Artifact):
    KIND: ClassVar[str] = "rollout_plan"
    model: str
    version: int
    stages: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0)  # percent of the eligible fleet
    soak_s: float = 600.0
    gates: tuple[str, ...] = ()  # e.g. "error_rate<0.01", "p99_ms<=1.2*baseline"
    cohort: dict[str, str] = field(default_factory=dict)


_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):?(\d{2})$")


def parse_window(text: str) -> tuple[int, int]:
    """``"02:00-05:00"`` -> (120, 300) minutes after local midnight; the end may pass midnight
    (``"22:00-04:00"``); InputError otherwise."""
    m = _WINDOW.match(text.strip()) if isinstance(text, str) else None
    start = int(m.group(1)) * 60 + int(m.group(2)) if m else 0
    end = int(m.group(3)) * 60 + int(m.group(4)) if m else 0
    if m is None or end > 24 * 60 or start == end:
        raise InputError(f"window {text!r}: expected HH:MM-HH:MM (device-local), e.g. 02:00-05:00")
    return start, end


def parse_utc_offset(text: str) -> int:
    """``"+02:00"``, ``"-0530"``, ``"UTC+01:00"`` -> minutes east of UTC (at most 14 h)."""
    m = _OFFSET.match(text.strip()) if isinstance(text, str) else None
    minutes = int(m.group(2)) * 60 + int(m.group(3)) if m else 0
    if m is None or minutes > 14 * 60 or int(m.group(3)) >= 60:
        raise InputError(f"UTC offset {text!r}: expected +HH:MM or -HH:MM, e.g. +02:00")
    return -minutes if m.group(1) == "-" else minutes


def _positive_int(name: str, value: Any, limit: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit
    if value is not None and not ok:
        raise InputError(f"{name} {value!r}: expected a whole number from 1 to {limit}")


@dataclass(frozen=True)
class RolloutControls(Artifact):
    """An operator's limits on a rollout, besides its statistical gates (hawkBit, Mender and
    AWS IoT Jobs have the same): None leaves a control off.

    * ``max_per_minute``: devices newly given the version per minute;
    * ``max_concurrent_downloads``: devices given the version that have not yet reported it
      installed (or failed), counted until ``download_timeout_s`` after their assignment;
    * ``window``: ``HH:MM-HH:MM`` device-local time in which a device may be given the new
      version (a rollback is never held back); the device's UTC offset is its label
      ``window_label`` (``utc_offset=+02:00``), else ``window_offset``;
    * ``max_failures`` / ``max_failure_rate``: the rollout fails (and rolls back) when more
      than this many devices, or this share of the stage's devices, failed to install the
      version or fell back from it (self-test, load or the agent's trial error limit).
    """

    KIND: ClassVar[str] = "rollout_controls"
    max_per_minute: int | None = None
    max_concurrent_downloads: int | None = None
    download_timeout_s: float = 1800.0
    window: str | None = None
    window_label: str = "utc_offset"
    window_offset: str = "+00:00"
    max_failures: int | None = None
    max_failure_rate: float | None = None

    def __post_init__(self) -> None:
        _positive_int("max_per_minute", self.max_per_minute, 1_000_000)
        _positive_int("max_concurrent_downloads", self.max_concurrent_downloads, 10_000_000)
        t = self.download_timeout_s
        if isinstance(t, bool) or not isinstance(t, int | float) or not 1.0 <= t <= 7 * 86400:
            raise InputError(f"download_timeout_s {t!r}: expected seconds from 1 to 604800")
        if self.window is not None:
            parse_window(self.window)
        label = self.window_label
        if not isinstance(label, str) or not 0 < len(label) <= 64:
            raise InputError(f"window_label {label!r}: expected a label name (1-64 characters)")
        try:
            parse_utc_offset(self.window_offset)
        except InputError as e:
            raise InputError(f"window_offset {str(e).removeprefix('UTC offset ')}") from e
        if self.max_failures is not None and not (
            isinstance(self.max_failures, int)
            and not isinstance(self.max_failures, bool)
            and 0 <= self.max_failures <= 10_000_000
        ):
            raise InputError(
                f"max_failures {self.max_failures!r}: expected a whole number from 0 up"
            )
        rate = self.max_failure_rate
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0
        ):
            raise InputError(f"max_failure_rate {rate!r}: expected a share from 0 to below 1")

    @property
    def tracked(self) -> bool:
        """Whether any control is on (the server then records each device's assignment)."""
        return any(
            v is not None
            for v in (
                self.max_per_minute,
                self.max_concurrent_downloads,
                self.window,
                self.max_failures,
                self.max_failure_rate,
            )
        )

    def utc_offset(self, labels: Mapping[str, Any]) -> int:
        """The device's offset in minutes: its label when it is a valid offset, else the
        rollout's default (a device with a malformed label is not locked out)."""
        value = labels.get(self.window_label)
        if isinstance(value, str):
            try:
                return parse_utc_offset(value)
            except InputError:
                pass
        return parse_utc_offset(self.window_offset)

    def in_window(self, now_utc: datetime, labels: Mapping[str, Any]) -> bool:
        """Whether ``now_utc`` falls inside the window in the device's local time."""
        if self.window is None:
            return True
        start, end = parse_window(self.window)
        local = now_utc.astimezone(timezone.utc) + timedelta(minutes=self.utc_offset(labels))
        minute = local.hour * 60 + local.minute
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end  # the window passes midnight


@dataclass(frozen=True)
class DeviceReport(Artifact):
    """Telemetry one device sends: any metric by name, so gates can take any of them."""

    KIND: ClassVar[str] = "device_report"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"sketch"})
    device_id: str
    model: str | None
    version: int | None
    window_s: float
    metrics: dict[str, float] = field(default_factory=dict)  # requests, errors, p50_ms, p99_ms ...
    agent_version: str | None = None
    sent_at: str | None = None
    # the window's monitoring sketch (``WindowSketch.to_dict``), when the model has a
    # reference; optional on the wire: a report without it is as before
    sketch: dict[str, Any] | None = None


@dataclass(frozen=True)
class DriftReport(Artifact):
    """What monitoring concluded about one version over one group of devices and window
    (``edgeloop.monitor.drift.drift_report`` makes it). Fields after ``window`` were added
    with defaults, so reports written before them still load."""

    KIND: ClassVar[str] = "drift_report"
    model: str
    version: int
    # name -> {psi, js, wasserstein, chi2, p, p_adj, ks, ks_p, n, drifted}; "@prediction" and
    # "@confidence" test the predicted classes and the confidence histogram
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    drifted: tuple[str, ...] = ()
    window: dict[str, Any] = field(default_factory=dict)  # start, end (unix s), index
    cohort: dict[str, str] = field(default_factory=dict)  # the device labels of the group
    reference_sha256: str | None = None
    n: float = 0.0  # effective rows after capping device weights
    devices: int = 0
    # "estimated" (CBPE) and "realized" (delayed labels): {value, low, high, n}
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    # feature -> {nan_rate, inf_rate, out_of_range_rate, stuck, devices}: features with an
    # issue in the group or on a device (the worse of the two), devices: how many had it
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    # label -> {"segments": {value: {metric: {value, low, high, n}}}, "gaps": [...]}
    segments: dict[str, Any] = field(default_factory=dict)
    alarm: bool = False  # this window is bad (drift or accuracy below the floor)
