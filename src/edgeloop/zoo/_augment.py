"""Training-time augmentation of input batches: random shifts, flips and erased patches.

An augmentation is named by a short spec: ``shift`` (translate each sample by up to 4 pixels,
or ``shift:N``), ``flip`` (mirror half the samples left to right), ``erase`` (blank a random
square of each image to its mean, Cutout; ``erase:N`` for an N-pixel side, default half the
image) or several joined with ``+`` (``shift+flip``). They apply to image batches
(N, C, H, W) and, for ``shift``, to time series (N, C, L) too. The random draws come from a
``torch.Generator`` that ``fit`` seeds, so a run is reproducible.

In distillation the teacher sees the same augmented batch as the student ("consistent
teaching"): that is what lets soft targets carry information the labels do not, on inputs
the labelled set never showed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F  # noqa: N812 - the usual name

from edgeloop.errors import InputError

__all__ = ["AUGMENTATIONS", "Augment", "augmentation", "augmentation_name"]

#: ``augment(batch, generator) -> batch`` on one input tensor.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: the names a spec is built from
AUGMENTATIONS = ("shift", "flip", "erase")
_DEFAULT_SHIFT = 4


def _check(x: torch.Tensor, name: str, dims: tuple[int, ...]) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() not in dims or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        want = " or ".join({3: "(N, C, L)", 4: "(N, C, H, W)"}[d] for d in dims)
        raise InputError(
            f"augmentation {name!r} needs a float input batch of shape {want}; got {shape}"
        )


def _shift(pixels: int) -> Augment:
    def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        _check(x, "shift", (3, 4))
        p = pixels
        n = x.shape[0]
        offsets = torch.randint(0, 2 * p + 1, (n, x.dim() - 2), generator=gen)
        if x.dim() == 3:
            padded = F.pad(x, (p, p), mode="replicate")
            length = x.shape[2]
            return torch.stack(
                [padded[i, :, o[0] : o[0] + length] for i, o in enumerate(offsets.tolist())]
            )
        padded = F.pad(x, (p, p, p, p), mode="replicate")
        h, w = x.shape[2], x.shape[3]
        return torch.stack(
            [padded[i, :, a : a + h, b : b + w] for i, (a, b) in enumerate(offsets.tolist())]
        )

    return shift


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    _check(x, "flip", (4,))
    mask = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def _erase(side: int | None) -> Augment:
    def erase(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        _check(x, "erase", (4,))
        n, _, h, w = x.shape
        k = min(side or max(1, min(h, w) // 2), h, w)
        # the square's centre may sit anywhere, so near the edges only part of it is inside
        cy = torch.randint(0, h, (n,), generator=gen)
        cx = torch.randint(0, w, (n,), generator=gen)
        rows = torch.arange(h)[None, :, None]
        cols = torch.arange(w)[None, None, :]
        top, left = (cy - k // 2)[:, None, None], (cx - k // 2)[:, None, None]
        inside = (rows >= top) & (rows < top + k) & (cols >= left) & (cols < left + k)
        fill = x.mean(dim=(2, 3), keepdim=True)
        return torch.where(inside[:, None], fill, x)

    return erase


def _pixels(part: str, arg: str, what: str, example: str) -> int | None:
    """The ``N`` of ``name:N`` (None when absent); anything but a whole number >= 1 is refused."""
    if not arg:
        return None
    if not arg.isdigit() or int(arg) < 1:
        raise InputError(
            f"augmentation {part!r}: {what} must be a whole number of pixels >= 1 (e.g. {example})"
        )
    return int(arg)


def augmentation(spec: str | Augment | None) -> Augment | None:
    """The augmentation a spec names (``None``, ``""`` and ``"none"`` mean none).

    A callable is returned as it is. An unknown name or a bad shift is refused here, before
    any training starts, naming the offending part and the choices.
    """
    if spec is None or callable(spec):
        return spec
    text = str(spec).strip().lower()
    if text in ("", "none"):
        return None
    steps: list[Augment] = []
    for part in text.split("+"):
        name, _, arg = part.strip().partition(":")
        if name == "shift":
            steps.append(_shift(_pixels(part, arg, "the shift", "shift:4") or _DEFAULT_SHIFT))
        elif name == "flip" and not arg:
            steps.append(_flip)
        elif name == "erase":
            steps.append(_erase(_pixels(part, arg, "the erased square's side", "erase:8")))
        else:
            raise InputError(
                f"unknown augmentation {part!r} in {spec!r}; expected 'none' or "
                f"{' / '.join(AUGMENTATIONS)} (shift:N, erase:N for N pixels), joined with '+'"
            )
    if len(steps) == 1:
        return steps[0]

    def chain(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for step in steps:
            x = step(x, gen)
        return x

    return chain


def augmentation_name(spec: str | Augment | None) -> str | None:
    """What to record in a checkpoint or report for ``spec``."""
    if spec is None:
        return None
    if callable(spec):
        return getattr(spec, "__name__", type(spec).__name__)
    text = str(spec).strip().lower()
    return None if text in ("", "none") else text
