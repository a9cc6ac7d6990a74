"""``textures``: a harder generated image task, and a sensor-shift transform for drift.

Each class is one (shape, fill) pair: four outlines (circle, square, triangle, plus) times
four fills (solid, stripes, checks, dots), 16 classes. A model must find the shape's outline
*and* read the fill inside it, against a background drawn from the same four fills, so
neither cue alone settles the class. Labels are exact (no label noise): what makes the task
hard is the inputs, and one ``difficulty`` knob (0-1) scales every nuisance together: at 0
the fills are coarse, upright and high-contrast on a plain background; towards 1 the
patterns get finer, fainter and turn further, the background clutter gets stronger,
occluding bars more frequent, shapes turn further and pixel noise and contrast changes grow.

:func:`sensor_shift` turns inputs into what a different sensor would record (gain, contrast,
colour cast, blur, noise), with one ``severity`` knob, for covariate-shift experiments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeloop.errors import DataError

__all__ = ["DEFAULT_DIFFICULTY", "TEXTURE_CLASSES", "sensor_shift", "textures_arrays"]

Pattern = Callable[[np.ndarray, np.ndarray], np.ndarray]

# chosen so that the zoo MobileNet (width 0.25, default training) lands between 80 and 95 %
DEFAULT_DIFFICULTY = 0.2


def _box(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.maximum(np.abs(u), np.abs(v))
    return out


# outlines on coordinates (u, v) scaled so the shape spans about [-1, 1]
_SHAPES: dict[str, Pattern] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: _box(u, v) <= 0.82,
    "triangle": lambda u, v: (np.abs(v) <= 0.85) & (np.abs(u) <= (v + 0.85) * 0.62),
    "plus": lambda u, v: ((np.abs(u) <= 0.34) | (np.abs(v) <= 0.34)) & (_box(u, v) <= 1.0),
}

# fills on phase coordinates (p, q) in radians; values > 0 are the pattern's "ink"
_TEXTURES: dict[str, Pattern] = {
    "solid": lambda p, q: np.ones_like(p),
    "stripes": lambda p, q: np.sin(p),
    "checks": lambda p, q: np.sin(p) * np.sin(q),
    "dots": lambda p, q: np.cos(p) + np.cos(q) - 1.0,
}


@dataclass(frozen=True)
class _Nuisance:
    """Every nuisance at one ``difficulty`` d in [0, 1] (each grows linearly with d)."""

    d: float

    @property
    def period(self) -> tuple[float, float]:  # the fills' period range, pixels
        return 6.0 - 2.0 * self.d, 8.0

    @property
    def angle(self) -> float:  # the fills' stripes turn by up to +- this angle (radians)
        return np.pi / 2 * self.d

    @property
    def fill_contrast(self) -> float:  # the fill pattern's contrast (1: full colour gap)
        return 1.0 - 0.6 * self.d

    @property
    def clutter(self) -> float:  # the background texture's contrast
        return 0.05 + 0.55 * self.d

    @property
    def occlusion(self) -> float:  # share of images crossed by a bar
        return 0.5 * self.d

    @property
    def rotation(self) -> float:  # the shape turns by up to +- this angle (radians)
        return np.pi / 6 * self.d

    @property
    def noise(self) -> tuple[float, float]:  # range of the pixel noise's standard deviation
        return 0.005, 0.01 + 0.09 * self.d

    @property
    def contrast(self) -> tuple[float, float]:  # range of the global contrast factor
        return 1.0 - 0.4 * self.d, 1.1


FILL_GAP = 0.6  # least colour distance between the fill's two colours
BACK_GAP = 0.35  # the same for the background's, before the clutter scales it

TEXTURE_CLASSES = tuple(f"{s}-{t}" for s in _SHAPES for t in _TEXTURES)


def _texture(
    kind: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
    rng: np.random.Generator,
    period: tuple[float, float],
    turn: float,
) -> np.ndarray:
    """One texture per image (``kind`` indexes ``_TEXTURES``), values in [0, 1], (k, H, W)."""
    k = len(kind)
    angle = rng.uniform(-turn, turn, (k, 1, 1)).astype(np.float32)
    freq = (2 * np.pi / rng.uniform(*period, (k, 1, 1))).astype(np.float32)
    phase = rng.uniform(0.0, 2 * np.pi, (k, 2, 1, 1)).astype(np.float32)
    ca, sa = np.cos(angle), np.sin(angle)
    p = (xx * ca + yy * sa) * freq + phase[:, 0]
    q = (yy * ca - xx * sa) * freq + phase[:, 1]
    out = np.empty(p.shape, dtype=np.float32)
    for t, fn in enumerate(_TEXTURES.values()):
        sel = kind == t
        if sel.any():
            # a soft threshold: sharp enough to read as a pattern, smooth enough not to alias
            out[sel] = 0.5 + 0.5 * np.tanh(2.5 * fn(p[sel], q[sel]))
    return out


def _colours(k: int, rng: np.random.Generator, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Two colours per image at least ``gap`` apart (Euclidean, RGB in [0, 1])."""
    a = rng.uniform(0.0, 1.0, (k, 3)).astype(np.float32)
    b = rng.uniform(0.0, 1.0, (k, 3)).astype(np.float32)
    d = b - a
    norm = np.linalg.norm(d, axis=1, keepdims=True) + 1e-6
    b = np.clip(np.where(norm < gap, a + d / norm * gap, b), 0.0, 1.0)
    return a, b


def textures_arrays(
    seed: int = 0,
    n: int = 10000,
    size: int = 32,
    difficulty: float = DEFAULT_DIFFICULTY,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Textured shapes on textured backgrounds, shape (N, 3, size, size) float32 in [0, 1].

    ``difficulty`` (0-1) scales every nuisance at once (see the module doc). Labels are
    balanced (``n // 16`` or one more per class) and shuffled; the same arguments give the
    same bytes.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise DataError(f"textures option difficulty must be in [0, 1], got {difficulty!r}")
    if n < 1 or size < 8:
        raise DataError(f"textures needs n >= 1 and size >= 8, got n={n!r}, size={size!r}")
    nu = _Nuisance(float(difficulty))
    rng = np.random.default_rng([seed, 0x7E57])
    n_shapes, n_tex = len(_SHAPES), len(_TEXTURES)
    y = np.arange(n, dtype=np.int64) % (n_shapes * n_tex)
    rng.shuffle(y)
    x = np.empty((n, 3, size, size), dtype=np.float32)
    grid = np.arange(size, dtype=np.float32) + 0.5
    xx, yy = grid[None, None, :], grid[None, :, None]
    period = (nu.period[0] * size / 32, nu.period[1] * size / 32)
    for c in range(n_shapes * n_tex):
        idx = np.flatnonzero(y == c)
        k = len(idx)
        shape_fn = list(_SHAPES.values())[c // n_tex]
        # the shape: centre, scale and rotation
        scale = rng.uniform(0.30, 0.44, (k, 1, 1)).astype(np.float32) * size
        cx, cy = (rng.uniform(0.36, 0.64, (2, k, 1, 1)) * size).astype(np.float32)
        rot = rng.uniform(-nu.rotation, nu.rotation, (k, 1, 1)).astype(np.float32)
        dx, dy = (xx - cx) / scale, (yy - cy) / scale
        u = dx * np.cos(rot) + dy * np.sin(rot)
        v = dy * np.cos(rot) - dx * np.sin(rot)
        mask = shape_fn(u, v).astype(np.float32)[:, None]  # (k, 1, H, W)
        # the fill is this class's texture; the background any texture, in other colours
        fill = _texture(np.full(k, c % n_tex), xx, yy, rng, period, nu.angle)[:, None]
        back = _texture(rng.integers(0, n_tex, k), xx, yy, rng, period, nu.angle)[:, None]
        f0, f1 = _colours(k, rng, FILL_GAP)
        b0, b1 = _colours(k, rng, BACK_GAP)
        # the fill's pattern fades towards its mean colour; the background's towards b0
        mid = (f0 + f1) / 2
        f0 = mid + np.float32(nu.fill_contrast) * (f0 - mid)
        f1 = mid + np.float32(nu.fill_contrast) * (f1 - mid)
        b1 = b0 + np.float32(nu.clutter) * (b1 - b0)
        fg = f0[:, :, None, None] * (1 - fill) + f1[:, :, None, None] * fill
        bg = b0[:, :, None, None] * (1 - back) + b1[:, :, None, None] * back
        img = bg * (1 - mask) + fg * mask
        # an occluding bar across a share of the images
        bar = rng.random(k) < nu.occlusion
        if bar.any():
            m = int(bar.sum())
            ang = rng.uniform(0.0, np.pi, (m, 1, 1)).astype(np.float32)
            off = rng.uniform(-0.25, 0.25, (m, 1, 1)).astype(np.float32) * size
            width = rng.uniform(0.06, 0.12, (m, 1, 1)).astype(np.float32) * size
            dist = (xx - size / 2) * np.cos(ang) + (yy - size / 2) * np.sin(ang) - off
            band = (np.abs(dist) <= width / 2).astype(np.float32)[:, None]
            colour = rng.uniform(0.0, 1.0, (m, 3, 1, 1)).astype(np.float32)
            img[bar] = img[bar] * (1 - band) + colour * band
        # global gain and contrast, then sensor noise
        contrast = rng.uniform(*nu.contrast, (k, 1, 1, 1)).astype(np.float32)
        bright = rng.uniform(-0.12, 0.12, (k, 1, 1, 1)).astype(np.float32)
        img = (img - 0.5) * contrast + 0.5 + bright
        sigma = rng.uniform(*nu.noise, (k, 1, 1, 1)).astype(np.float32)
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * sigma
        x[idx] = np.clip(img, 0.0, 1.0)
    return x, y, TEXTURE_CLASSES


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes (edges replicated)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    w /= w.sum()
    pad = [(0, 0)] * (x.ndim - 2) + [(radius, radius), (radius, radius)]
    xp = np.pad(x, pad, mode="edge")
    h, wd = x.shape[-2:]
    rows = sum(w[i] * xp[..., i : i + h, :] for i in range(len(w)))
    out: np.ndarray = sum(w[i] * rows[..., :, i : i + wd] for i in range(len(w)))
    return out


def sensor_shift(x: np.ndarray, severity: float = 1.0, seed: int = 0) -> np.ndarray:
    """Inputs as a different camera would record them: a covariate shift, labels unchanged.

    ``x`` is a float image batch (N, C, H, W) in [0, 1]. At ``severity`` s (0 = unchanged,
    1 = a clearly different sensor, up to 3) the whole batch gets the same sensor: gain
    ``1 + 0.25 s`` in brightness, contrast scaled by ``1 - 0.3 s`` (floored at 0.1), a colour
    cast of ``0.08 s`` per channel (fixed by ``seed``), a Gaussian blur of ``0.6 s`` pixels and
    added noise ``0.02 s``; the result is clipped to [0, 1] and float32. The same ``seed``
    gives the same sensor and the same noise.
    """
    if not 0.0 <= severity <= 3.0 or not np.isfinite(severity):
        raise DataError(f"sensor_shift severity must be in [0, 3], got {severity!r}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise DataError(f"sensor_shift needs images (N, C, H, W); got shape {x.shape}")
    if severity == 0.0:
        return x.copy()
    rng = np.random.default_rng([seed, 0x5E75])
    s = float(severity)
    cast = rng.choice([-1.0, 1.0], x.shape[1]) * rng.uniform(0.5, 1.0, x.shape[1]) * 0.08 * s
    out = _blur(x, 0.6 * s)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * max(0.1, 1.0 - 0.3 * s) + mean * (1.0 + 0.25 * s)
    out = out + cast.astype(np.float32)[None, :, None, None]
    out = out + rng.standard_normal(out.shape, dtype=np.float32) * (0.02 * s)
    result: np.ndarray = np.clip(out, 0.0, 1.0).astype(np.float32)
    return result
