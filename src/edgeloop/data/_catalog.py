"""``load_dataset``: built-in datasets by name, or a user's file or folder by path."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.data._dataset import SPLITS, Dataset, Inputs, split_indices
from edgeloop.data._files import load_csv, load_image_folder, load_npz
from edgeloop.errors import DataError, FileError, UnknownNameError

__all__ = ["BUILTIN", "DatasetInfo", "list_datasets", "load_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str
    description: str
    options: tuple[str, ...]  # keyword arguments the generator takes


BUILTIN: dict[str, DatasetInfo] = {
    i.name: i
    for i in (
        DatasetInfo(
            "digits", "classification", "scikit-learn's 8x8 digits, (1,8,8), 10 classes", ()
        ),
        DatasetInfo(
            "shapes",
            "classification",
            "generated coloured shapes, (3,32,32), 10 classes",
            ("n", "size"),
        ),
        DatasetInfo(
            "textures",
            "classification",
            "generated textured shapes on textured clutter, (3,32,32), 16 classes (harder)",
            ("n", "size", "difficulty"),
        ),
        DatasetInfo(
            "har",
            "classification",
            "generated accelerometer windows, (3,128) at 50 Hz, 7 activities, split by subject",
            ("subjects", "windows", "steps"),
        ),
        DatasetInfo(
            "anomaly",
            "anomaly",
            "generated machine vibration vectors, (32,), train/val normal only, test 0/1",
            ("n", "sensors", "bands", "latent"),
        ),
        DatasetInfo(
            "tokens",
            "classification",
            "generated token sequences, int64 input_ids + attention_mask (48), 8 classes",
            ("n", "max_len", "motifs"),
        ),
    )
}


def list_datasets() -> list[str]:
    """Names of the built-in datasets (any ``.npz``, ``.csv`` or image folder path works too)."""
    return sorted(BUILTIN)


def _readonly(*arrays: Any) -> None:
    for a in arrays:
        if isinstance(a, dict):
            _readonly(*a.values())
        elif isinstance(a, np.ndarray):
            a.flags.writeable = False


@functools.lru_cache(maxsize=6)
def _generate(name: str, seed: int, options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The whole dataset plus the indices of each split, cached (arrays are read-only)."""
    kw = dict(options)
    meta: dict[str, Any] = {}
    x: Inputs
    if name == "digits":
        from edgeloop.data._images import digits_arrays

        x, y, classes = digits_arrays(seed)
        splits = split_indices(len(y), seed, labels=y)
    elif name == "shapes":
        from edgeloop.data._images import shapes_arrays

        x, y, classes = shapes_arrays(seed, **kw)
        splits = split_indices(len(y), seed, labels=y)
    elif name == "textures":
        from edgeloop.data._textures import textures_arrays

        x, y, classes = textures_arrays(seed, **kw)
        splits = split_indices(len(y), seed, labels=y)
    elif name == "har":
        from edgeloop.data._har import HAR_RATE_HZ, har_arrays

        x, y, subject, classes = har_arrays(seed, **kw)
        people = split_indices(int(subject.max()) + 1, seed)
        splits = {s: np.flatnonzero(np.isin(subject, people[s])) for s in SPLITS}
        splits = {
            s: np.random.default_rng([seed, i]).permutation(v)
            for i, (s, v) in enumerate(splits.items())
        }
        meta = {"rate_hz": HAR_RATE_HZ, "subject": subject}
    elif name == "anomaly":
        from edgeloop.data._sequences import ANOMALY_KINDS, anomaly_arrays

        x, y, kind = anomaly_arrays(seed, **kw)
        classes = ("normal", "anomaly")
        splits = split_indices(len(y), seed, labels=y)
        for s in ("train", "val"):  # an anomaly detector learns from normal data only
            splits[s] = splits[s][y[splits[s]] == 0]
        meta = {"kind": kind, "kinds": ANOMALY_KINDS}
    elif name == "tokens":
        from edgeloop.data._sequences import tokens_arrays

        x, y, classes, vocab = tokens_arrays(seed, **kw)
        splits = split_indices(len(y), seed, labels=y)
        meta = {"vocab_size": vocab, "max_len": int(x["input_ids"].shape[1])}
    else:  # pragma: no cover - guarded by load_dataset
        raise UnknownNameError(f"unknown dataset {name!r}")
    _readonly(x, y)
    return {"x": x, "y": y, "classes": classes, "splits": splits, "meta": meta}


def _select(x: Inputs, index: np.ndarray) -> Inputs:
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def _builtin(name: str, split: str, seed: int, kw: dict[str, Any]) -> Dataset:
    info = BUILTIN[name]
    bad = sorted(set(kw) - set(info.options))
    if bad:
        allowed = ", ".join(info.options) or "none"
        raise DataError(
            f"dataset {name!r} takes no option(s) {', '.join(bad)}; it takes: {allowed}"
        )
    g = _generate(name, seed, tuple(sorted(kw.items())))
    meta = dict(g["meta"])
    if split == "all":
        x, y = g["x"], g["y"]
        index = np.arange(len(y))
    else:
        index = g["splits"][split]
        x, y = _select(g["x"], index), g["y"][index]
    for k in ("subject", "kind"):
        if k in meta:
            meta[k] = meta[k][index]
    return Dataset(name, info.task, x, y, g["classes"], split, meta={**meta, "seed": seed})


_FileLoader = Callable[..., tuple[Inputs, "np.ndarray | None", tuple[str, ...]]]


def _from_path(path: Path, split: str, seed: int, kw: dict[str, Any]) -> Dataset:
    task = kw.pop("task", "classification")
    require_labels = kw.pop("require_labels", task == "classification")
    options: dict[str, tuple[str, ...]] = {
        "npz": (),
        "csv": ("label_column",),
        "folder": ("image_size", "channels"),
    }
    kind = "folder" if path.is_dir() else path.suffix.lower().lstrip(".")
    if kind not in options:
        raise FileError(
            f"cannot load data from {str(path)!r}: expected a .npz file, a .csv file or a folder "
            f"of images per class"
        )
    bad = sorted(set(kw) - set(options[kind]))
    if bad:
        raise DataError(f"{kind} data {str(path)!r} takes no option(s) {', '.join(bad)}")
    x: Inputs
    if kind == "npz":
        x, y, classes = load_npz(path)
    elif kind == "csv":
        x, y, classes = load_csv(path, **kw)
    else:
        x, y, classes = load_image_folder(path, **kw)
    if y is None and require_labels:
        raise DataError(
            f"{str(path)!r} has no labels, which this task needs: add a 'label' column "
            f"(or name it with label_column=) or a 'y' array"
        )
    if task == "anomaly" and not classes:
        classes = ("normal", "anomaly")
    ds = Dataset(path.name, task, x, y, classes, "all", meta={"path": str(path), "seed": seed})
    if split == "all":
        return ds
    strat = y if y is not None and task == "classification" else None
    index = split_indices(len(ds), seed, labels=strat)[split]
    if len(index) == 0:
        raise DataError(f"{str(path)!r}: {len(ds)} samples leave none for the {split!r} split")
    return Dataset(
        ds.name,
        task,
        _select(x, index),
        None if y is None else y[index],
        classes,
        split,
        meta=ds.meta,
    )


def load_dataset(
    name_or_path: str | Path, split: str | None = None, seed: int = 0, **kw: Any
) -> Dataset:
    """Load a built-in dataset by name, or a user's ``.npz`` / ``.csv`` / image folder by path.

    ``split`` is ``train``, ``val``, ``test`` or ``all``. Built-in datasets default to ``test``;
    a user's file defaults to ``all`` (the whole file), and its ``train``/``val``/``test`` are a
    deterministic 70/10/20 split by ``seed`` (stratified by label). Keyword options: see
    ``BUILTIN[name].options`` for generators; files take ``task=``, ``require_labels=``, and
    ``label_column=`` (CSV) or ``image_size=``/``channels=`` (image folders); labels are
    required for ``task="classification"`` (the default) and optional for ``anomaly``.
    """
    name = str(name_or_path)
    builtin = name in BUILTIN and not isinstance(name_or_path, Path)
    split = split if split is not None else ("test" if builtin else "all")
    if split not in (*SPLITS, "all"):
        raise DataError(f"unknown split {split!r}; expected one of train, val, test, all")
    if builtin:
        return _builtin(name, split, seed, kw)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _from_path(path, split, seed, kw)
    if path.suffix or "/" in name or "\\" in name:
        raise FileError(f"data file {name!r} does not exist")
    raise UnknownNameError(
        f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}"
    )
