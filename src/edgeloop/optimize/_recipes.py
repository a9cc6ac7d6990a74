"""Recipes: load them from a preset name, a YAML/JSON file or a mapping, and list the presets.

A recipe file is an ordered list of passes::

    name: my-int8
    description: static int8 with entropy calibration
    passes:
      - preprocess
      - quantize: {calibration: entropy, per_channel: true}

Each entry is a pass name, a one-key mapping ``{name: params}``, or ``{name: ..., params: ...}``.
Presets are the YAML files in ``edgeloop/optimize/presets/``; other modules add theirs with
:func:`register_preset` (a :class:`Recipe`) or :func:`add_preset_dir` (a folder of YAML files).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from edgeloop.artifacts import PassSpec, Recipe
from edgeloop.errors import FileError, InputError, UnknownNameError
from edgeloop.optimize._passes import registered_passes

__all__ = [
    "PRESET_DIRS",
    "add_preset_dir",
    "list_recipes",
    "load_recipe",
    "parse_recipe",
    "register_preset",
]

#: folders searched for ``<name>.yaml`` presets, in order
PRESET_DIRS: list[Path] = [Path(str(resources.files("edgeloop.optimize") / "presets"))]
_REGISTERED: dict[str, Recipe] = {}


def register_preset(recipe: Recipe) -> None:
    """Make ``recipe`` available by its name (later registrations win)."""
    _REGISTERED[recipe.name] = recipe


def add_preset_dir(path: str | Path) -> None:
    p = Path(path)
    if p not in PRESET_DIRS:
        PRESET_DIRS.append(p)


def _preset_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in PRESET_DIRS:
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")):
                found.setdefault(f.stem, f)
    return found


def list_recipes() -> dict[str, Recipe]:
    """Every preset by name."""
    out = {name: _read_file(path) for name, path in _preset_files().items()}
    out.update(_REGISTERED)
    return dict(sorted(out.items()))


def _pass_spec(entry: Any, where: str, index: int) -> PassSpec:
    if isinstance(entry, PassSpec):
        return entry
    params: Any
    if isinstance(entry, str):
        name, params = entry, {}
    elif isinstance(entry, Mapping) and "name" in entry:
        name, params = entry["name"], entry.get("params") or {}
    elif isinstance(entry, Mapping) and len(entry) == 1:
        ((name, params),) = entry.items()
        params = params or {}
    else:
        raise InputError(
            f"{where}: pass #{index + 1} must be a name, {{name: params}} or "
            f"{{name: ..., params: ...}}; got {entry!r}"
        )
    if not isinstance(name, str) or not isinstance(params, Mapping):
        raise InputError(f"{where}: pass #{index + 1} has name {name!r} and params {params!r}")
    known = registered_passes()
    if name not in known:
        raise UnknownNameError(
            f"{where}: unknown pass {name!r} (pass #{index + 1}); expected one of: "
            f"{', '.join(known)}"
        )
    return PassSpec(name=name, params=dict(params))


def parse_recipe(
    data: Mapping[str, Any], where: str = "recipe", default_name: str = "custom"
) -> Recipe:
    """Build a :class:`Recipe` from the YAML/JSON structure (or a ``Recipe.to_dict()``)."""
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected a mapping with 'passes', got {type(data).__name__}")
    passes = data.get("passes")
    if not isinstance(passes, list) or not passes:
        raise InputError(f"{where}: 'passes' must be a non-empty list, got {passes!r}")
    specs = tuple(_pass_spec(p, where, i) for i, p in enumerate(passes))
    return Recipe(
        name=str(data.get("name") or default_name),
        passes=specs,
        description=str(data.get("description") or ""),
    )


def _read_file(path: Path) -> Recipe:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FileError(f"cannot read recipe {str(path)!r}: {e.strerror or e}") from e
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
        raise InputError(f"recipe {str(path)!r} is not valid YAML/JSON: {e}") from e
    return parse_recipe(data, f"recipe {str(path)!r}", default_name=path.stem)


def load_recipe(recipe: str | Path | Recipe | Mapping[str, Any]) -> Recipe:
    """A :class:`Recipe` from a preset name, a ``.yaml``/``.json`` file, a mapping or a Recipe."""
    if isinstance(recipe, Recipe):
        return parse_recipe(recipe.to_dict(), f"recipe {recipe.name!r}", recipe.name)
    if isinstance(recipe, Mapping):
        return parse_recipe(recipe)
    path = Path(recipe)
    # a file, not a folder: `--out int8` leaves a folder named like the preset in the cwd
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise FileError(f"recipe file {str(path)!r} does not exist")
        return _read_file(path)
    name = str(recipe)
    if name in _REGISTERED:
        return _REGISTERED[name]
    files = _preset_files()
    if name not in files:
        known = sorted(set(files) | set(_REGISTERED))
        raise UnknownNameError(
            f"unknown recipe {name!r}; expected a preset ({', '.join(known)}) or a .yaml file"
        )
    return _read_file(files[name])
