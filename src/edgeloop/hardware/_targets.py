"""Built-in target profiles: published figures for boards edgeloop plans for, as data files."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import UnknownNameError

__all__ = ["list_targets", "load_target"]


def _files() -> dict[str, str]:
    """Target name -> JSON text, for every file in ``hardware/targets``."""
    root = resources.files("edgeloop.hardware").joinpath("targets")
    return {
        entry.name.removesuffix(".json"): entry.read_text(encoding="utf-8")
        for entry in root.iterdir()
        if entry.name.endswith(".json")
    }


def _aliases() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, text in _files().items():
        out[name] = name
        for alias in json.loads(text).get("aliases", []):
            out[str(alias).lower()] = name
    return out


def list_targets() -> list[str]:
    """Names of the built-in targets, sorted (``load_target`` accepts these and their aliases)."""
    return sorted(_files())


def load_target(name_or_path: str | Path) -> DeviceProfile:
    """A built-in target by name or alias (``rpi4``, ``raspberry-pi-4``), or a profile JSON file.

    A profile that ``edgeloop profile --save`` wrote is a valid file too.
    """
    key = str(name_or_path)
    canonical = _aliases().get(key.lower())
    if canonical is not None:
        return DeviceProfile.from_json(_files()[canonical])
    path = Path(key)
    if path.suffix == ".json" or path.exists():
        return DeviceProfile.load(path)
    raise UnknownNameError(
        f"unknown target {key!r}; built-in targets: {', '.join(list_targets())} "
        "(or give the path of a profile .json)"
    )
