"""Loaders for a user's own data: ``.npz`` arrays, CSV tables, and a folder of images per class.

Each returns the whole file as ``(x, y, classes)``; :func:`edgeloop.data.load_dataset` splits it.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from edgeloop.data._dataset import Inputs
from edgeloop.errors import DataError, FileError

__all__ = ["IMAGE_SUFFIXES", "load_csv", "load_image_folder", "load_npz"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_LABEL_KEYS = ("y", "label", "labels")


def _labels(raw: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices and names from raw labels: ints 0..K-1 keep their value, others are sorted."""
    raw = np.asarray(raw).reshape(-1)
    if raw.dtype.kind in "iu" or (raw.dtype.kind == "f" and np.all(np.mod(raw, 1) == 0)):
        ints = raw.astype(np.int64)
        if len(ints) and ints.min() < 0:
            raise DataError(f"{where}: labels must be >= 0, found {int(ints.min())}")
        k = int(ints.max()) + 1 if len(ints) else 0
        return ints, tuple(str(i) for i in range(k))
    names = sorted({str(v) for v in raw})
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[str(v)] for v in raw], dtype=np.int64), tuple(names)


def load_npz(path: Path) -> tuple[Inputs, np.ndarray | None, tuple[str, ...]]:
    """Arrays ``x`` (and ``y``), or one array per model input plus ``y``; optional ``classes``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise FileError(f"{str(path)!r} is not a readable .npz file: {e}") from e
    label_key = next((k for k in _LABEL_KEYS if k in arrays), None)
    raw_classes = arrays.pop("classes", None)
    y_raw = arrays.pop(label_key) if label_key else None
    if not arrays:
        raise DataError(f"{str(path)!r} holds no input arrays; expected 'x' or one per model input")
    x: Inputs
    if set(arrays) == {"x"}:
        x = _as_input(arrays["x"], "x", path)
    else:
        x = {k: _as_input(v, k, path) for k, v in arrays.items()}
    if y_raw is None:
        return x, None, ()
    y, classes = _labels(y_raw, str(path))
    if raw_classes is not None:
        classes = tuple(str(c) for c in np.asarray(raw_classes).reshape(-1))
        if len(y) and int(y.max()) >= len(classes):
            raise DataError(
                f"{str(path)!r}: label {int(y.max())} but only {len(classes)} classes listed"
            )
    return x, y, classes


def _as_input(a: np.ndarray, name: str, path: Path) -> np.ndarray:
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind in "fb":
        return a.astype(np.float32)
    raise DataError(f"{str(path)!r}: array {name!r} has dtype {a.dtype}, expected numbers")


def load_csv(
    path: Path, label_column: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """A header row, then one sample per row: numeric features and a label column."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise FileError(f"cannot read CSV {str(path)!r}: {e}") from e
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataError(f"CSV {str(path)!r} has no data rows; expected a header and samples")
    header = [h.strip() for h in rows[0]]
    wanted = label_column or "label"
    if label_column is not None and label_column not in header:
        raise DataError(
            f"CSV {str(path)!r} has no column {label_column!r}; columns are {', '.join(header)}"
        )
    li = header.index(wanted) if wanted in header else None
    feats = [i for i in range(len(header)) if i != li]
    if not feats:
        raise DataError(f"CSV {str(path)!r} has no feature columns besides {wanted!r}")
    x = np.empty((len(rows) - 1, len(feats)), dtype=np.float32)
    labels: list[str] = []
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(
                f"CSV {str(path)!r} line {r}: {len(row)} fields, expected {len(header)}"
            )
        for j, i in enumerate(feats):
            try:
                x[r - 2, j] = float(row[i])
            except ValueError:
                raise DataError(
                    f"CSV {str(path)!r} line {r}: column {header[i]!r} is {row[i]!r}, "
                    f"expected a number (name the label column with label_column=)"
                ) from None
        if li is not None:
            labels.append(row[li].strip())
    if li is None:
        return x, None, ()
    try:
        raw: np.ndarray = np.asarray([float(v) for v in labels])
    except ValueError:
        raw = np.asarray(labels)
    y, classes = _labels(raw, f"CSV {str(path)!r}")
    return x, y, classes


def load_image_folder(
    root: Path, image_size: int | tuple[int, int] = 32, channels: int = 3
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``root/<class>/*.png`` (jpg, bmp, ...): images resized to ``image_size``, (N, C, H, W)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:  # pragma: no cover - pillow is in the train extra
        raise DataError(
            "loading an image folder needs pillow: pip install 'edgeloop[train]'"
        ) from e
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    classes = tuple(
        sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    files: list[tuple[Path, int]] = []
    for c, name in enumerate(classes):
        for p in sorted((root / name).iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                files.append((p, c))
    if not files:
        raise DataError(
            f"image folder {str(root)!r} holds no images; expected {str(root)}/<class>/<image> "
            f"with suffixes {', '.join(IMAGE_SUFFIXES)}"
        )
    x = np.empty((len(files), channels, h, w), dtype=np.float32)
    mode = "RGB" if channels == 3 else "L"
    for i, (p, _) in enumerate(files):
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert(mode).resize((w, h), Image.Resampling.BILINEAR))
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read image {str(p)!r}: {e}") from e
        x[i] = (arr.reshape(h, w, channels).transpose(2, 0, 1)).astype(np.float32) / 255.0
    y = np.asarray([c for _, c in files], dtype=np.int64)
    return x, y, classes
