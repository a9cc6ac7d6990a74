"""Search spaces: which architecture, which knobs, which values each knob may take.

Two built-in spaces: ``mobilenet`` (the zoo's ``mbconv``: width, depth, kernel size, expansion
ratio and input resolution) and ``transformer`` (the zoo's ``transformer``: layers, heads,
hidden size and feed-forward ratio). A JSON file may narrow or change a built-in space's
values: ``{"space": "mobilenet", "choices": {"width": [0.25, 0.5], "depth": [1]}}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeloop.errors import FileError, InputError, UnknownNameError

__all__ = ["SPACES", "SearchSpace", "list_spaces", "load_space"]

Choice = int | float


@dataclass(frozen=True)
class SearchSpace:
    """An architecture of the zoo and the values each of its searched knobs may take."""

    name: str
    arch: str
    default_dataset: str
    description: str
    choices: dict[str, tuple[Choice, ...]] = field(default_factory=dict)

    def sample(self, trial: Any) -> dict[str, Choice]:
        """One point of the space, drawn by an Optuna trial (categorical per knob)."""
        return {k: trial.suggest_categorical(k, list(v)) for k, v in self.choices.items()}

    def arch_kwargs(self, params: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        """The zoo builder's keyword arguments for ``params`` on a dataset (``base``: channels,
        classes and sizes from ``zoo.kwargs_for``)."""
        kw = dict(base)
        for k, v in params.items():
            if k == "resolution":  # a fraction of the data's own size, a multiple of 4 pixels
                native = int(base.get("input_size", 32))
                kw["resolution"] = max(4, int(round(native * float(v) / 4)) * 4)
                if kw["resolution"] >= native:
                    kw["resolution"] = None
            elif k == "ff_ratio":
                kw["ff"] = int(kw.get("dim", 64) * int(v))
            else:
                kw[k] = v
        return kw

    def size(self) -> int:
        """How many points the space holds."""
        return math.prod(len(v) for v in self.choices.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": self.arch,
            "choices": {k: list(v) for k, v in self.choices.items()},
        }


# knob -> (type, least, most) of the values a space file may give
_LIMITS: dict[str, dict[str, tuple[type, float, float]]] = {
    "mobilenet": {
        "width": (float, 0.1, 2.0),
        "depth": (int, 1, 6),
        "kernel": (int, 1, 9),
        "expansion": (int, 1, 8),
        "resolution": (float, 0.25, 1.0),
    },
    "transformer": {
        "layers": (int, 1, 8),
        "heads": (int, 1, 16),
        "dim": (int, 8, 512),
        "ff_ratio": (int, 1, 8),
    },
}

SPACES: dict[str, SearchSpace] = {
    s.name: s
    for s in (
        SearchSpace(
            "mobilenet",
            "mbconv",
            "textures",
            "inverted-residual CNN: width, depth per stage, depthwise kernel, expansion, "
            "input resolution (fraction of the data's size)",
            {
                "width": (0.25, 0.35, 0.5, 0.75, 1.0),
                "depth": (1, 2, 3),
                "kernel": (3, 5, 7),
                "expansion": (2, 3, 4, 6),
                "resolution": (0.5, 0.75, 1.0),
            },
        ),
        SearchSpace(
            "transformer",
            "transformer",
            "tokens",
            "transformer encoder: layers, attention heads, hidden size, feed-forward ratio",
            {
                "layers": (1, 2, 3, 4),
                "heads": (1, 2, 4),
                "dim": (32, 64, 96, 128),
                "ff_ratio": (2, 4),
            },
        ),
    )
}


def list_spaces() -> list[str]:
    return sorted(SPACES)


def _checked(space: str, knob: str, values: Any) -> tuple[Choice, ...]:
    limits = _LIMITS[space]
    if knob not in limits:
        raise InputError(
            f"space {space!r} has no knob {knob!r}; its knobs: {', '.join(sorted(limits))}"
        )
    kind, lo, hi = limits[knob]
    if not isinstance(values, list) or not values or len(values) > 32:
        raise InputError(f"knob {knob!r} needs a list of 1 to 32 values, got {values!r}")
    out: list[Choice] = []
    for v in values:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if ok and kind is int and not float(v).is_integer():
            ok = False
        if not ok or not lo <= v <= hi:
            what = "an integer" if kind is int else "a number"
            raise InputError(f"knob {knob!r}: {v!r} is not {what} in [{lo:g}, {hi:g}]")
        out.append(int(v) if kind is int else float(v))
    if knob == "kernel" and any(int(k) % 2 == 0 for k in out):
        raise InputError(f"knob 'kernel' takes odd sizes only, got {values!r}")
    return tuple(dict.fromkeys(out))


def load_space(name_or_path: str | Path | SearchSpace) -> SearchSpace:
    """A built-in space by name, or a JSON file that narrows one (see the module doc)."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    key = str(name_or_path)
    if key in SPACES:
        return SPACES[key]
    path = Path(key)
    if path.suffix != ".json" and not path.exists():
        raise UnknownNameError(
            f"unknown search space {key!r}; built-in spaces: {', '.join(list_spaces())} "
            "(or give the path of a space .json)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FileError(f"cannot read search space {key!r}: {e.strerror or e}") from e
    if len(text) > 65536:
        raise FileError(f"search space file {key!r} is larger than 64 KiB")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FileError(f"search space {key!r} is not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("space") not in SPACES:
        raise InputError(
            f'search space {key!r} must be an object with "space" one of {", ".join(list_spaces())}'
        )
    base = SPACES[doc["space"]]
    given = doc.get("choices", {})
    if not isinstance(given, dict):
        raise InputError(f'search space {key!r}: "choices" must be an object')
    choices = dict(base.choices)
    for knob, values in given.items():
        choices[knob] = _checked(base.name, str(knob), values)
    if base.name == "transformer":
        bad = [(d, h) for d in choices["dim"] for h in choices["heads"] if int(d) % int(h)]
        if bad:
            raise InputError(
                f"search space {key!r}: every dim must divide by every heads value; "
                f"{bad[0][0]} does not divide by {bad[0][1]}"
            )
    return SearchSpace(path.stem, base.arch, base.default_dataset, base.description, choices)
