import json
from pathlib import Path

import pytest

from edgeloop.artifacts import (
    DeviceProfile,
    LineageRef,
    Manifest,
    ModelCard,
    PassSpec,
    Recipe,
    TensorSpec,
)
from edgeloop.errors import FileError, InputError


def _card() -> ModelCard:
    return ModelCard(
        name="digits",
        sha256="ab" * 32,
        inputs=(TensorSpec("x", "float32", (None, 1, 8, 8)),),
        outputs=(TensorSpec("logits", "float32", (None, 10)),),
        metrics={"accuracy": 0.97},
        lineage=(LineageRef("dataset", "cd" * 32, name="digits"),),
        recipe=Recipe("int8", (PassSpec("quantize", {"mode": "static"}),)),
    )


def test_model_card_round_trips_through_json() -> None:
    card = _card()
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.inputs[0].shape == (None, 1, 8, 8)
    assert again.recipe is not None and again.recipe.passes[0].params == {"mode": "static"}


def test_unknown_fields_are_kept_and_written_back() -> None:
    data = _card().to_dict()
    data["added_by_a_newer_edgeloop"] = {"a": 1}
    card = ModelCard.from_dict(data)
    assert card.extra == {"added_by_a_newer_edgeloop": {"a": 1}}
    assert card.to_dict()["added_by_a_newer_edgeloop"] == {"a": 1}


def test_wrong_kind_is_refused_with_both_names() -> None:
    with pytest.raises(InputError, match="expected a 'model_card' artifact, got kind 'recipe'"):
        ModelCard.from_dict(Recipe("x").to_dict())


def test_missing_required_field_is_named() -> None:
    with pytest.raises(InputError, match="missing field.*sha256"):
        ModelCard.from_dict({"kind": "model_card", "name": "x"})


def test_manifest_nests_a_card() -> None:
    m = Manifest(name="digits", version=3, model_card=_card(), parts={"model": {"length": 1}})
    assert Manifest.from_dict(json.loads(m.to_json())) == m


def test_save_is_atomic_and_load_names_the_missing_file(tmp_path: Path) -> None:
    p = DeviceProfile(name="box", source="measured", arch="x86_64", cpu_model="cpu", isa=("avx2",))
    p.save(tmp_path / "p.json")
    assert DeviceProfile.load(tmp_path / "p.json") == p
    assert [f.name for f in tmp_path.iterdir()] == ["p.json"]
    with pytest.raises(FileError, match="nope.json' does not exist"):
        DeviceProfile.load(tmp_path / "nope.json")


def test_digest_is_stable_and_content_addressed() -> None:
    assert _card().digest() == _card().digest()
    assert _card().digest() != ModelCard(name="other", sha256="0" * 64).digest()
