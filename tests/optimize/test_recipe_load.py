"""Recipes: presets, YAML files, validation, registration; the public ``optimize`` name."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.artifacts import PassSpec, Recipe
from edgeloop.errors import FileError, InputError, UnknownNameError
from edgeloop.optimize import list_recipes, load_recipe, register_preset


def test_presets_include_the_five_issue_presets() -> None:
    names = set(list_recipes())
    assert {"int8", "int8-dynamic", "int4", "fp16", "fused"} <= names


def test_int8_preset_is_preprocess_then_static_quantize() -> None:
    r = load_recipe("int8")
    assert [p.name for p in r.passes] == ["preprocess", "quantize"]
    assert r.passes[1].params["per_channel"] == "auto"


def test_yaml_file_with_all_entry_forms(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(
        "passes:\n  - preprocess\n  - quantize: {calibration: entropy}\n"
        "  - name: fuse\n    params: {level: basic}\n"
    )
    r = load_recipe(f)
    assert r.name == "mine"
    assert [(p.name, p.params) for p in r.passes] == [
        ("preprocess", {}),
        ("quantize", {"calibration": "entropy"}),
        ("fuse", {"level": "basic"}),
    ]


def test_unknown_pass_names_the_pass_and_its_position(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("passes:\n  - preprocess\n  - quantise\n")
    with pytest.raises(UnknownNameError, match=r"'quantise' \(pass #2\)"):
        load_recipe(f)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="int8-dynamic"):
        load_recipe("int3")


def test_missing_recipe_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(FileError):
        load_recipe(tmp_path / "nope.yaml")


def test_empty_pass_list_is_rejected() -> None:
    with pytest.raises(InputError, match="non-empty"):
        load_recipe({"name": "x", "passes": []})


def test_registered_preset_is_found_by_name() -> None:
    recipe = Recipe(name="test-fuse-basic", passes=(PassSpec("fuse", {"level": "basic"}),))
    register_preset(recipe)
    assert load_recipe("test-fuse-basic") == recipe
    assert "test-fuse-basic" in list_recipes()


def test_recipe_digest_is_stable_across_loads() -> None:
    assert load_recipe("int8").digest() == load_recipe("int8").digest()


def test_public_optimize_is_the_function_even_after_importing_the_package() -> None:
    import sys

    import edgeloop.optimize._pipeline  # noqa: F401 - binds the subpackage on edgeloop
    from edgeloop import optimize

    assert callable(optimize) and optimize.__name__ == "optimize"
    assert edgeloop.optimize is optimize
    assert sys.modules["edgeloop.optimize"].optimize is optimize


def test_preset_name_is_a_preset_even_with_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "int8").mkdir()  # what `edgeloop optimize ... --out int8` leaves in the cwd
    monkeypatch.chdir(tmp_path)

    r = load_recipe("int8")

    assert [p.name for p in r.passes] == ["preprocess", "quantize"]


def test_suffixless_file_needs_a_path_separator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine").write_text("passes:\n  - fuse\n")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(UnknownNameError, match=r"give it as \./mine"):
        load_recipe("mine")
    r = load_recipe("./mine")

    assert [p.name for p in r.passes] == ["fuse"]


def test_recipe_path_that_is_a_folder_is_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").mkdir()

    with pytest.raises(FileError, match="is a directory"):
        load_recipe(str(tmp_path / "r.yaml"))
