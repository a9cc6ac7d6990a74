"""Walking lineage back: card refs resolved to registry versions, blobs, or left unknown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edgeloop.artifacts import LineageRef, ModelCard, sha256_file
from edgeloop.errors import RegistryError
from edgeloop.registry import LineageNode, Registry

MakeOnnx = Callable[..., Path]
MakeCard = Callable[..., ModelCard]
RECIPE_SHA = "1" * 64
CALIB_SHA = "2" * 64


def _summary(node: LineageNode) -> list[tuple[str, str, str | None]]:
    return [(n.role, n.kind, n.ref) for n in node.walk()]


def test_optimized_model_walks_back_to_its_source_and_teacher(
    registry: Registry, make_onnx: MakeOnnx, make_card: MakeCard
) -> None:
    base, teacher, student = make_onnx("base", 1.0), make_onnx("teacher", 2.0), make_onnx("s", 3.0)
    registry.push(teacher, "big")
    registry.push(
        base, "kws", card=make_card(base, "kws", [("teacher_model", sha256_file(teacher))])
    )
    registry.push(
        student,
        "kws-int8",
        card=make_card(
            student,
            "kws-int8",
            [
                ("source_model", sha256_file(base)),
                LineageRef(role="recipe", sha256=RECIPE_SHA, name="int8-static"),
                ("calibration_data", CALIB_SHA),
            ],
        ),
    )

    tree = registry.lineage("kws-int8@1")

    assert _summary(tree) == [
        ("self", "version", "kws-int8@1"),
        ("source_model", "version", "kws@1"),
        ("teacher_model", "version", "big@1"),
        ("recipe", "unknown", None),
        ("calibration_data", "unknown", None),
    ]
    assert tree.children[1].name == "int8-static"
    assert tree.sha256 == sha256_file(student)


def test_refs_to_stored_blobs_cards_and_bundles_resolve(
    registry: Registry,
    make_onnx: MakeOnnx,
    make_card: MakeCard,
    make_bundle: Callable[..., Path],
) -> None:
    base, child = make_onnx("base", 1.0), make_onnx("child", 2.0)
    base_card = make_card(base, "kws")
    bundle = make_bundle(base, base_card, 1)
    registry.push(base, "kws", card=base_card, bundles=[(bundle, "fp32", {})])
    data = registry.push(make_onnx("calib", 9.0), "calibration-set")  # any stored file
    refs = [
        ("evaluation", base_card.digest()),
        ("bundle", sha256_file(bundle)),
        ("calibration_data", data.artifact.sha256),
    ]
    registry.push(child, "kws-small", card=make_card(child, "kws-small", refs))

    kinds = [(n.role, n.kind, n.ref) for n in registry.lineage("kws-small@1").children]

    assert kinds == [
        ("evaluation", "card", "kws@1"),
        ("bundle", "bundle", "kws@1"),
        ("calibration_data", "version", "calibration-set@1"),
    ]


def test_parent_version_named_model_at_n_resolves_by_name(
    registry: Registry, make_onnx: MakeOnnx, make_card: MakeCard
) -> None:
    registry.push(make_onnx("v1", 1.0), "kws")
    child = make_onnx("v2", 2.0)
    ref = LineageRef(role="parent_version", sha256="3" * 64, name="kws@1")
    registry.push(child, "kws", card=make_card(child, "kws", [ref]))

    (parent,) = registry.lineage("kws@2").children

    assert (parent.kind, parent.ref, parent.sha256) == ("version", "kws@1", "3" * 64)


def test_cycle_is_marked_once_and_not_walked_again(
    registry: Registry, make_onnx: MakeOnnx, make_card: MakeCard
) -> None:
    a, b = make_onnx("a", 1.0), make_onnx("b", 2.0)
    registry.push(a, "a", card=make_card(a, "a", [("parent_version", sha256_file(b))]))
    registry.push(b, "b", card=make_card(b, "b", [("parent_version", sha256_file(a))]))

    tree = registry.lineage("a@1")

    assert [(n.ref, n.cycle) for n in tree.walk()] == [
        ("a@1", False),
        ("b@1", False),
        ("a@1", True),
    ]
    assert tree.children[0].children[0].children == ()


def test_lineage_follows_aliases_and_is_json(
    registry: Registry, make_onnx: MakeOnnx, make_card: MakeCard
) -> None:
    base, child = make_onnx("base", 1.0), make_onnx("child", 2.0)
    registry.push(base, "kws")
    registry.push(child, "kws", card=make_card(child, "kws", [("source_model", sha256_file(base))]))
    registry.set_alias("kws@2", "production")

    data = registry.lineage("kws@production").to_dict()

    assert data["version"] == 2
    assert data["children"][0]["version"] == 1
    assert data["children"][0]["children"] == []


def test_lineage_of_unknown_version_names_it(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.push(make_onnx("m", 1.0), "kws")

    with pytest.raises(RegistryError, match="model 'kws' has no version 4"):
        registry.lineage("kws@4")


def test_find_by_hash_lists_every_version_with_that_file(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    path = make_onnx("m", 1.0)
    registry.push(path, "kws")
    registry.push(path, "kws-copy")

    assert [v.ref for v in registry.find(sha256_file(path))] == ["kws@1", "kws-copy@1"]
    assert registry.find("0" * 64) == []


def test_derived_from_walks_forward_from_a_version_or_a_hash(
    registry: Registry, make_onnx: MakeOnnx, make_card: MakeCard
) -> None:
    base, a, b = make_onnx("base", 1.0), make_onnx("a", 2.0), make_onnx("b", 3.0)
    registry.push(base, "kws")
    registry.push(a, "kws-int8", card=make_card(a, "x", [("source_model", sha256_file(base))]))
    registry.push(
        b,
        "kws-tiny",
        card=make_card(b, "y", [("teacher_model", sha256_file(base)), ("dataset", CALIB_SHA)]),
    )

    assert registry.derived_from("kws@1") == [
        ("kws-int8", 1, "source_model"),
        ("kws-tiny", 1, "teacher_model"),
    ]
    assert registry.derived_from(CALIB_SHA) == [("kws-tiny", 1, "dataset")]
    assert registry.derived_from("kws-tiny@1") == []
