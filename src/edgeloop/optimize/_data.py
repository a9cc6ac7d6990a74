"""Data for calibration and measurement, matched to a model's inputs.

The data comes from a dataset name (``edgeloop.data.load_dataset``), a :class:`Dataset`, a
user's ``.npz`` with one array per model input (optional labels under ``y``/``label``/
``labels``), or a ``.npy`` for a single-input model (memory-mapped). Arrays are matched to the
model's inputs by name (by position for a single input) and checked for dtype and shape before
anything runs; a mismatch is a :class:`ModelInputError` that names the input.

Calibration streams fixed-size batches through :class:`StreamingReader`: at most one batch is
materialised at a time (slices of the source arrays, which may be memory-mapped), so memory
stays bounded whatever the dataset size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgeloop.errors import DataError, FileError, ModelInputError
from edgeloop.optimize._model import InputSpec

__all__ = [
    "LABEL_KEYS",
    "ModelData",
    "StreamingReader",
    "held_out_split",
    "load_model_data",
    "match_inputs",
]

LABEL_KEYS = ("y", "label", "labels")


@dataclass
class ModelData:
    """Arrays keyed by model input name (N samples each), labels if any, and provenance."""

    name: str
    sha256: str
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    task: str | None = None
    classes: tuple[str, ...] = ()
    calib: dict[str, np.ndarray] = field(default_factory=dict)
    calib_sha256: str = ""

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def sample(self, n: int) -> dict[str, np.ndarray]:
        return {k: v[:n] for k, v in self.inputs.items()}

    def reader(self, batch_size: int = 8, limit: int | None = None) -> StreamingReader:
        source = self.calib or self.inputs
        return StreamingReader(source, batch_size=batch_size, limit=limit)


class StreamingReader(CalibrationDataReader):  # type: ignore[misc]
    """ONNX Runtime calibration reader yielding one batch of feeds at a time."""

    def __init__(
        self, arrays: Mapping[str, np.ndarray], batch_size: int = 8, limit: int | None = None
    ) -> None:
        self.arrays = dict(arrays)
        self.batch_size = max(1, int(batch_size))
        n = len(next(iter(self.arrays.values())))
        self.n = n if limit is None else min(n, int(limit))
        self._range = (0, len(self))
        self._it: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        first, last = self._range
        for b in range(first, last):
            start = b * self.batch_size
            stop = min(start + self.batch_size, self.n)
            yield {k: np.ascontiguousarray(v[start:stop]) for k, v in self.arrays.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()

    def set_range(self, start_index: int, end_index: int) -> None:
        """Batches ``start_index`` to ``end_index`` only: ORT's strided calibration calls this
        to collect (and reduce) one chunk at a time, so activations never pile up."""
        self._range = (max(0, start_index), min(len(self), end_index))
        self._it = self._batches()

    def stride(self, most: int = 8) -> int:
        """The largest chunk (in batches, at most ``most``) that divides the batch count."""
        n = len(self)
        return max(d for d in range(1, min(most, n) + 1) if n % d == 0) if n else 1

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size


def _coerce(spec: InputSpec, arr: np.ndarray, where: str) -> np.ndarray:
    """Check one array against one model input; cast where it is lossless."""
    a = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
    if a.ndim != len(spec.shape):
        raise ModelInputError(
            f"{where}: array for model input {spec.describe()} has shape {list(a.shape)}; "
            f"expected rank {len(spec.shape)} (batch first)"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, a.shape, strict=True)):
        if axis > 0 and want is not None and want != got:
            raise ModelInputError(
                f"{where}: array for model input {spec.describe()} has shape {list(a.shape)}; "
                f"dimension {axis} should be {want}"
            )
    if a.dtype == spec.dtype:
        return a
    want_kind, got_kind = spec.dtype.kind, a.dtype.kind
    if want_kind == "f" and got_kind in "fiub":
        return a.astype(spec.dtype)
    if want_kind in "iu" and got_kind in "iub":
        return a.astype(spec.dtype)
    if want_kind == "b" and got_kind == "b":
        return a
    raise ModelInputError(
        f"{where}: array for model input {spec.describe()} has dtype {a.dtype}; "
        f"expected {spec.dtype}"
    )


def match_inputs(
    specs: list[InputSpec], arrays: Mapping[str, np.ndarray], where: str
) -> dict[str, np.ndarray]:
    """Map arrays to the model's inputs: by name, or by position when both have one."""
    if not arrays:
        raise DataError(f"{where}: no input arrays")
    if len(specs) == 1 and len(arrays) == 1:
        (arr,) = arrays.values()
        return {specs[0].name: _coerce(specs[0], arr, where)}
    names = {s.name for s in specs}
    extra = sorted(set(arrays) - names)
    if extra:
        raise ModelInputError(
            f"{where}: array(s) {', '.join(map(repr, extra))} match no model input; "
            f"the model's inputs are {', '.join(s.describe() for s in specs)}"
        )
    out: dict[str, np.ndarray] = {}
    for s in specs:
        if s.name not in arrays:
            raise ModelInputError(
                f"{where}: no array for model input {s.describe()}; "
                f"got arrays {', '.join(map(repr, arrays))}"
            )
        out[s.name] = _coerce(s, arrays[s.name], where)
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ModelInputError(f"{where}: arrays differ in length (samples): {lengths}")
    return out


def _hash_arrays(arrays: Mapping[str, np.ndarray], labels: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = arrays[k]
        h.update(f"{k}|{a.dtype.str}|{a.shape}\n".encode())
        for start in range(0, len(a), 4096):  # chunked: works on memory-mapped arrays
            h.update(np.ascontiguousarray(a[start : start + 4096]).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def _from_file(path: Path, specs: list[InputSpec]) -> ModelData:
    where = f"data {str(path)!r}"
    if not path.exists():
        raise FileError(f"{where} does not exist")
    try:
        if path.suffix == ".npy":
            arrays: dict[str, np.ndarray] = {specs[0].name: np.load(path, mmap_mode="r")}
            labels = None
        else:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
            label_key = next(
                (k for k in LABEL_KEYS if k in raw and k not in {s.name for s in specs}), None
            )
            labels = raw.pop(label_key) if label_key else None
            arrays = raw
    except (OSError, ValueError) as e:
        raise FileError(f"{where}: not a readable .npz/.npy file ({e})") from e
    matched = match_inputs(specs, arrays, where)
    if labels is not None and len(labels) != len(next(iter(matched.values()))):
        raise DataError(
            f"{where}: {len(labels)} labels for {len(next(iter(matched.values())))} samples"
        )
    task = "classification" if labels is not None else None
    return ModelData(path.name, _hash_arrays(arrays, labels), matched, labels, task)


def load_model_data(
    data: Any,
    specs: list[InputSpec],
    *,
    eval_samples: int = 512,
    calib_samples: int = 256,
    seed: int = 0,
) -> ModelData:
    """Resolve ``data`` (dataset name, Dataset, .npz/.npy path or dict of arrays)."""
    if isinstance(data, ModelData):
        return data
    if isinstance(data, Mapping):
        matched = match_inputs(specs, data, "data")
        md = ModelData("arrays", "", matched)
        return held_out_split(md, eval_samples, calib_samples, seed)
    if isinstance(data, str | Path) and (
        Path(data).suffix in (".npz", ".npy") or Path(data).exists()
    ):
        return held_out_split(_from_file(Path(data), specs), eval_samples, calib_samples, seed)
    if isinstance(data, str):
        from edgeloop.data import load_dataset

        evaluation = load_dataset(data, split="test", seed=seed)
        calibration = load_dataset(data, split="train", seed=seed)
        return _from_dataset(evaluation, specs, eval_samples, calibration, calib_samples)
    if hasattr(data, "inputs") and hasattr(data, "sha256"):  # one Dataset: split it
        n = len(data)
        n_cal = min(calib_samples, n // 2) if n >= 2 else 0
        if n_cal == 0:
            return _from_dataset(data, specs, eval_samples, data, calib_samples)
        calibration = data.take(slice(0, n_cal))
        evaluation = data.take(slice(n_cal, n))
        md = _from_dataset(evaluation, specs, eval_samples, calibration, calib_samples)
        md.name = str(data.name)
        return md
    raise DataError(
        f"data must be a dataset name, a Dataset, a .npz/.npy path or a dict of arrays; "
        f"got {type(data).__name__}"
    )


def held_out_split(md: ModelData, eval_samples: int, calib_samples: int, seed: int) -> ModelData:
    """One set of samples -> disjoint calibration and evaluation parts, deterministically.

    Budgets scored on the calibration samples themselves flatter static int8 (its ranges were
    fitted to exactly those activations), so the evaluation part is held out: calibration takes
    the first samples (at most half, ``calib_samples`` at most), evaluation the ones after them
    (``eval_samples`` at most). Contiguous slices keep memory-mapped ``.npy`` data mapped
    (a shuffled pick would copy it). Each part gets its own sha256. A single sample cannot be
    split: it serves both, and the two hashes say so by being equal. ``seed`` is unused (kept
    for a shuffled split later).
    """
    del seed
    n = len(md)
    n_cal = min(calib_samples, n // 2)
    if n_cal == 0:
        digest = _hash_arrays(md.inputs, md.labels)
        md.calib, md.sha256, md.calib_sha256 = dict(md.inputs), digest, digest
        return md
    ev = slice(n_cal, n_cal + eval_samples)
    md.calib = {k: v[:n_cal] for k, v in md.inputs.items()}
    md.inputs = {k: v[ev] for k, v in md.inputs.items()}
    md.labels = None if md.labels is None else md.labels[ev]
    md.sha256 = _hash_arrays(md.inputs, md.labels)
    md.calib_sha256 = _hash_arrays(md.calib, None)
    return md


def _from_dataset(
    evaluation: Any, specs: list[InputSpec], eval_samples: int, calibration: Any, calib_samples: int
) -> ModelData:
    where = f"dataset {evaluation.name!r}"
    ev = evaluation.subset(eval_samples)
    cal = calibration.subset(calib_samples)
    matched = match_inputs(specs, ev.inputs, where)
    calib = match_inputs(specs, cal.inputs, where)
    return ModelData(
        name=str(evaluation.name),
        sha256=str(evaluation.sha256),
        inputs=matched,
        labels=ev.y,
        task=str(evaluation.task),
        classes=tuple(getattr(evaluation, "classes", ())),
        calib=calib,
        calib_sha256=str(cal.sha256),
    )
