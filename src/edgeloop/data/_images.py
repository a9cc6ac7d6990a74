"""Image datasets: scikit-learn's bundled digits and generated coloured shapes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SHAPE_CLASSES", "digits_arrays", "shapes_arrays"]


def digits_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The 1797 8x8 digits bundled with scikit-learn, scaled to [0, 1], shape (N, 1, 8, 8)."""
    del seed  # the data are fixed; the split is what the seed decides
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (np.asarray(d.images, dtype=np.float32) / 16.0)[:, None, :, :]
    y = np.asarray(d.target, dtype=np.int64)
    return x, y, tuple(str(i) for i in range(10))


Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _box(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.maximum(np.abs(u), np.abs(v))
    return out


_SHAPES: dict[str, Mask] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: _box(u, v) <= 0.8,
    "triangle": lambda u, v: (np.abs(v) <= 0.8) & (np.abs(u) <= (v + 0.8) * 0.6),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.36),
    "plus": lambda u, v: ((np.abs(u) <= 0.25) | (np.abs(v) <= 0.25)) & (_box(u, v) <= 0.9),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.0,
    "hbar": lambda u, v: (np.abs(u) <= 1.0) & (np.abs(v) <= 0.3),
    "vbar": lambda u, v: (np.abs(v) <= 1.0) & (np.abs(u) <= 0.3),
    "cross": lambda u, v: (
        ((np.abs(u - v) <= 0.35) | (np.abs(u + v) <= 0.35)) & (_box(u, v) <= 0.85)
    ),
    "frame": lambda u, v: (_box(u, v) <= 0.9) & (_box(u, v) >= 0.6),
}
SHAPE_CLASSES = tuple(_SHAPES)


def shapes_arrays(
    seed: int = 0, n: int = 6000, size: int = 32
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Coloured geometric shapes on noisy backgrounds, shape (N, 3, size, size) in [0, 1].

    Each image varies the shape's position, scale and colour, the background colour, and the
    pixel noise; a shape's colour always differs from its background by a visible margin.
    """
    rng = np.random.default_rng([seed, 0x5A4E])
    y = np.arange(n, dtype=np.int64) % len(_SHAPES)
    rng.shuffle(y)
    x = np.empty((n, 3, size, size), dtype=np.float32)
    grid = np.arange(size, dtype=np.float32) + 0.5
    for c, mask_fn in enumerate(_SHAPES.values()):
        idx = np.flatnonzero(y == c)
        k = len(idx)
        scale = rng.uniform(0.24, 0.4, k).astype(np.float32) * size
        cx = rng.uniform(0.35, 0.65, k).astype(np.float32) * size
        cy = rng.uniform(0.35, 0.65, k).astype(np.float32) * size
        u = (grid[None, None, :] - cx[:, None, None]) / scale[:, None, None]
        v = (grid[None, :, None] - cy[:, None, None]) / scale[:, None, None]
        m = mask_fn(u, v).astype(np.float32)[:, None]  # (k, 1, H, W)
        bg = rng.uniform(0.0, 1.0, (k, 3)).astype(np.float32)
        fg = rng.uniform(0.0, 1.0, (k, 3)).astype(np.float32)
        # push the foreground away from the background so every shape is visible
        gap = fg - bg
        norm = np.linalg.norm(gap, axis=1, keepdims=True) + 1e-6
        fg = np.clip(np.where(norm < 0.7, bg + gap / norm * 0.7, fg), 0.0, 1.0)
        img = bg[:, :, None, None] * (1.0 - m) + fg[:, :, None, None] * m
        sigma = rng.uniform(0.01, 0.06, (k, 1, 1, 1)).astype(np.float32)
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * sigma
        x[idx] = np.clip(img, 0.0, 1.0)
    return x, y, SHAPE_CLASSES
