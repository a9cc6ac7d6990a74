"""The registry's interface, written once and run on SQLite and on PostgreSQL (``db_url``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.artifacts import ModelCard, sha256_file
from edgeloop.errors import IntegrityError, RegistryError
from edgeloop.registry import Registry

MakeOnnx = Callable[..., Path]


def test_push_assigns_versions_one_by_one(registry: Registry, make_onnx: MakeOnnx) -> None:
    versions = [registry.push(make_onnx("m", float(i)), "kws").version for i in range(3)]

    assert versions == [1, 2, 3]
    assert registry.get_model("kws").versions == (1, 2, 3)


def test_explicit_higher_version_is_kept_and_next_follows_it(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.push(make_onnx("m", 1.0), "kws")

    assert registry.push(make_onnx("m", 2.0), "kws", version=10).version == 10
    assert registry.push(make_onnx("m", 3.0), "kws").version == 11


@pytest.mark.parametrize("offered", [3, 2])
def test_version_at_or_below_newest_is_refused_naming_both(
    registry: Registry, make_onnx: MakeOnnx, offered: int
) -> None:
    registry.push(make_onnx("m", 1.0), "kws", version=3)

    with pytest.raises(RegistryError, match=rf"version {offered} of 'kws'.*newest is 3"):
        registry.push(make_onnx("m", 2.0), "kws", version=offered)
    assert registry.get_model("kws").versions == (3,)


@pytest.mark.parametrize("offered", [0, -1, 2**31])
def test_version_out_of_range_is_refused(
    registry: Registry, make_onnx: MakeOnnx, offered: int
) -> None:
    with pytest.raises(RegistryError, match=rf"from 1 to 2147483647, got {offered}"):
        registry.push(make_onnx("m", 1.0), "kws", version=offered)
    assert registry.list_models() == []


def test_concurrent_pushes_get_distinct_versions(registry: Registry, make_onnx: MakeOnnx) -> None:
    files = [make_onnx(f"m{i}", float(i)) for i in range(8)]
    got: list[int] = []
    errors: list[BaseException] = []

    def push(path: Path) -> None:
        try:
            got.append(registry.push(path, "kws").version)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(got) == list(range(1, 9))


def test_artifact_is_stored_content_addressed_and_deduplicated(
    registry: Registry, make_onnx: MakeOnnx, tmp_path: Path
) -> None:
    path = make_onnx("m", 1.0)
    sha = sha256_file(path)

    a = registry.push(path, "kws")
    b = registry.push(path, "other")

    assert a.artifact == b.artifact
    assert a.artifact.sha256 == sha
    assert a.artifact.path == f"blobs/sha256/{sha[:2]}/{sha}"
    assert a.artifact.length == path.stat().st_size
    assert a.artifact.media_type == "application/onnx"
    stored = list((tmp_path / "data" / "blobs" / "sha256").rglob("*"))
    assert [p.name for p in stored if p.is_file()] == [sha]
    assert registry.read_blob(sha) == path.read_bytes()


def test_corrupted_blob_is_detected_on_read(registry: Registry, make_onnx: MakeOnnx) -> None:
    v = registry.push(make_onnx("m", 1.0), "kws")
    registry.blob_path(v.artifact.sha256).write_bytes(b"tampered")

    with pytest.raises(IntegrityError, match=v.artifact.sha256):
        registry.read_blob(v.artifact.sha256)


def test_card_round_trips_and_must_describe_the_pushed_file(
    registry: Registry, make_onnx: MakeOnnx, make_card: Callable[..., ModelCard]
) -> None:
    path, other = make_onnx("m", 1.0), make_onnx("n", 2.0)
    card = make_card(path, "kws")

    v = registry.push(path, "kws", card=card)
    with pytest.raises(RegistryError, match="describes sha256"):
        registry.push(other, "kws", card=card)

    assert registry.get_version("kws", 1).card == card
    assert v.card_sha256 == card.digest()
    assert registry.get_model("kws").versions == (1,)


def test_card_is_read_from_a_json_file(
    registry: Registry, make_onnx: MakeOnnx, make_card: Callable[..., ModelCard], tmp_path: Path
) -> None:
    path = make_onnx("m", 1.0)
    card_file = make_card(path, "kws").save(tmp_path / "m.card.json")

    v = registry.push(path, "kws", card=card_file)

    assert v.card == ModelCard.load(card_file)
    with pytest.raises(RegistryError, match=r"card '.*m\.card\.json' describes sha256 .*n\.onnx"):
        registry.push(make_onnx("n", 2.0), "kws", card=card_file)


def test_evaluations_are_recorded_with_dataset_and_author(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.push(make_onnx("m", 1.0), "kws")

    registry.add_evaluation(
        "kws@1", "accuracy", 0.91, dataset="digits", dataset_sha256="ab" * 32, actor="ci"
    )
    registry.add_evaluation("kws@1", "p99_ms", 1.5, actor="ci")

    evals = registry.get_version("kws", 1).evaluations
    assert [(e.metric, e.value, e.dataset, e.created_by) for e in evals] == [
        ("accuracy", 0.91, "digits", "ci"),
        ("p99_ms", 1.5, None, "ci"),
    ]
    assert evals[0].dataset_sha256 == "ab" * 32
    assert evals[0].created_at.tzinfo is not None


def test_non_finite_evaluation_is_refused(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.push(make_onnx("m", 1.0), "kws")

    with pytest.raises(RegistryError, match="accuracy.*finite"):
        registry.add_evaluation("kws@1", "accuracy", float("nan"))


def test_alias_history_records_every_move_and_reverts(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    for i in range(3):
        registry.push(make_onnx("m", float(i)), "kws")

    registry.set_alias("kws@1", "production", reason="first release", actor="ann")
    registry.set_alias("kws@3", "production", reason="better recall", actor="bob")
    registry.set_alias("kws@2", "production", reason="gate p99_ms failed", actor="rollout")
    registry.set_alias("kws@3", "canary", actor="bob")

    history = registry.alias_history("kws", "production")
    assert [(e.action, e.from_version, e.to_version, e.actor, e.reason) for e in history] == [
        ("set", None, 1, "ann", "first release"),
        ("set", 1, 3, "bob", "better recall"),
        ("revert", 3, 2, "rollout", "gate p99_ms failed"),
    ]
    assert [e.alias for e in registry.alias_history("kws")] == ["production"] * 3 + ["canary"]
    assert registry.resolve("kws@production").version == 2
    assert registry.get_model("kws").aliases == {"canary": 3, "production": 2}
    assert registry.get_version("kws", 3).aliases == ("canary",)


def test_alias_action_can_be_given_explicitly(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.push(make_onnx("m", 1.0), "kws")
    registry.push(make_onnx("m", 2.0), "kws")
    registry.set_alias("kws@1", "production")

    event = registry.set_alias("kws@2", "production", action="revert", reason="signed revert")

    assert (event.action, event.from_version, event.to_version) == ("revert", 1, 2)


def test_removed_alias_no_longer_resolves_but_stays_in_history(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.push(make_onnx("m", 1.0), "kws")
    registry.set_alias("kws@1", "canary")

    event = registry.remove_alias("kws", "canary", reason="done")

    assert (event.action, event.from_version, event.to_version) == ("remove", 1, None)
    with pytest.raises(RegistryError, match="no alias 'canary'"):
        registry.resolve("kws@canary")
    assert [e.action for e in registry.alias_history("kws", "canary")] == ["set", "remove"]


def test_resolve_without_version_gives_the_newest(registry: Registry, make_onnx: MakeOnnx) -> None:
    registry.push(make_onnx("m", 1.0), "kws")
    registry.push(make_onnx("m", 2.0), "kws", version=7)

    assert registry.resolve("kws").version == 7
    assert registry.resolve("kws@1").version == 1


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope@1", "unknown model 'nope'; known models: kws"),
        ("kws@9", "model 'kws' has no version 9 \\(it has versions 1\\)"),
        ("kws@stable", "model 'kws' has no alias 'stable' \\(it has no aliases\\)"),
        ("kws@", "expected NAME, NAME@VERSION or NAME@ALIAS"),
        ("bad name", "model name 'bad name' is not valid"),
    ],
)
def test_unknown_or_malformed_references_name_what_is_wrong(
    registry: Registry, make_onnx: MakeOnnx, ref: str, message: str
) -> None:
    registry.push(make_onnx("m", 1.0), "kws")

    with pytest.raises(RegistryError, match=message):
        registry.resolve(ref)


def test_unknown_model_in_an_empty_registry(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="unknown model 'kws'; the registry is empty"):
        registry.alias_history("kws")


def test_bundles_are_variants_of_a_version_with_requirements(
    registry: Registry,
    make_onnx: MakeOnnx,
    make_card: Callable[..., ModelCard],
    make_bundle: Callable[..., Path],
) -> None:
    path = make_onnx("m", 1.0)
    card = make_card(path, "kws")
    int8 = make_bundle(path, card, 1, requirements={"isa": ["avx512_vnni"]}, out="int8.elb")
    fp32 = make_bundle(path, card, 1, out="fp32.elb")

    v = registry.push(path, "kws", card=card, bundles=[(int8, "int8-vnni", {"arch": "x86_64"})])
    attached = registry.add_bundle("kws@1", fp32, "fp32")

    bundles = {b.variant: b for b in registry.get_version("kws", 1).bundles}
    assert [b.variant for b in v.bundles] == ["int8-vnni"]
    assert set(bundles) == {"fp32", "int8-vnni"}
    assert bundles["int8-vnni"].requirements["isa"] == ["avx512_vnni"]
    assert bundles["int8-vnni"].requirements["arch"] == "x86_64"
    assert bundles["fp32"] == attached
    assert bundles["fp32"].sha256 == sha256_file(fp32)
    assert registry.read_blob(bundles["fp32"].sha256) == fp32.read_bytes()
    assert [x.ref for x in registry.find(bundles["fp32"].sha256)] == ["kws@1"]


def test_bundle_variant_cannot_be_replaced(
    registry: Registry,
    make_onnx: MakeOnnx,
    make_card: Callable[..., ModelCard],
    make_bundle: Callable[..., Path],
) -> None:
    path = make_onnx("m", 1.0)
    card = make_card(path, "kws")
    registry.push(path, "kws", card=card)
    registry.add_bundle("kws@1", make_bundle(path, card, 1, out="a.elb"), "fp32")

    with pytest.raises(RegistryError, match="already has a bundle variant 'fp32'"):
        registry.add_bundle("kws@1", make_bundle(path, card, 1, out="b.elb"), "fp32")


def test_bundle_for_another_version_or_not_a_bundle_is_refused(
    registry: Registry,
    make_onnx: MakeOnnx,
    make_card: Callable[..., ModelCard],
    make_bundle: Callable[..., Path],
) -> None:
    path = make_onnx("m", 1.0)
    card = make_card(path, "kws")
    registry.push(path, "kws", card=card)

    with pytest.raises(RegistryError, match="is kws@5, but it is being attached to kws@1"):
        registry.add_bundle("kws@1", make_bundle(path, card, 5), "fp32")
    with pytest.raises(RegistryError, match="not an edgeloop bundle"):
        registry.add_bundle("kws@1", path, "fp32")
    assert registry.get_version("kws", 1).bundles == ()


def test_failed_push_leaves_no_version_behind(
    registry: Registry,
    make_onnx: MakeOnnx,
    make_card: Callable[..., ModelCard],
    make_bundle: Callable[..., Path],
) -> None:
    path = make_onnx("m", 1.0)
    card = make_card(path, "kws")
    wrong = make_bundle(path, card, 2)  # the push below makes version 1

    with pytest.raises(RegistryError, match="being attached to kws@1"):
        registry.push(path, "kws", card=card, bundles=[(wrong, "fp32", {})], alias="production")

    assert registry.list_models() == []


def test_list_models_is_sorted_with_versions_and_aliases(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    registry.push(make_onnx("b", 1.0), "zeta")
    registry.push(make_onnx("a", 2.0), "alpha", alias="production")
    registry.push(make_onnx("c", 3.0), "alpha")

    models = registry.list_models()

    assert [(m.name, m.versions, m.aliases, m.latest) for m in models] == [
        ("alpha", (1, 2), {"production": 1}, 2),
        ("zeta", (1,), {}, 1),
    ]


def test_data_survives_reopening(db_url: str, tmp_path: Path, make_onnx: MakeOnnx) -> None:
    with Registry(db_url, tmp_path / "data") as reg:
        reg.push(make_onnx("m", 1.0), "kws", alias="production", reason="go")

    with Registry(db_url, tmp_path / "data") as again:
        v = again.resolve("kws@production")
        assert (v.version, again.read_blob(v.artifact.sha256)) == (
            1,
            make_onnx("m", 1.0).read_bytes(),
        )


_PUSHER = """
import sys
from pathlib import Path
from edgeloop.registry import Registry
url, data, *files = sys.argv[1:]
with Registry(url, data) as reg:
    for f in files:
        print(reg.push(Path(f), "kws", actor="proc").version)
"""


@pytest.mark.slow
def test_two_processes_push_to_one_database(
    db_url: str, tmp_path: Path, make_onnx: MakeOnnx
) -> None:
    """Several server processes may share one database (SQLite file or PostgreSQL)."""
    import subprocess
    import sys

    Registry(db_url, tmp_path / "data").close()  # migrated once, as a server would at start
    files = [[str(make_onnx(f"p{p}m{i}", p * 10.0 + i)) for i in range(5)] for p in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PUSHER, db_url, str(tmp_path / "data"), *fs],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for fs in files
    ]
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    versions = sorted(int(v) for out, _ in outs for v in out.split())
    assert versions == list(range(1, 11))
    with Registry(db_url, tmp_path / "data") as reg:
        assert reg.get_model("kws").versions == tuple(range(1, 11))


def test_database_failure_is_one_registry_error(registry: Registry, make_onnx: MakeOnnx) -> None:
    import sqlalchemy as sa

    registry.push(make_onnx("m", 1.0), "kws")
    with registry.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alias_events"))

    with pytest.raises(RegistryError, match="database .* failed: .*alias_events"):
        registry.alias_history("kws")


def test_malformed_hashes_are_refused_before_anything_is_written(
    registry: Registry, make_onnx: MakeOnnx, make_card: Callable[..., ModelCard]
) -> None:
    path = make_onnx("m", 1.0)
    card = make_card(path, "kws", [("source_model", "abc123")])

    with pytest.raises(RegistryError, match="lineage ref 'source_model'.*'abc123' is not a sha256"):
        registry.push(path, "kws", card=card)
    assert registry.list_models() == []

    registry.push(path, "kws")
    with pytest.raises(RegistryError, match="dataset sha256 of metric 'accuracy'"):
        registry.add_evaluation("kws@1", "accuracy", 0.9, dataset_sha256="xyz")
    assert registry.get_version("kws", 1).evaluations == ()


_counter = iter(range(10**9))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.one_of(st.none(), st.integers(min_value=1, max_value=12)), max_size=6))
def test_versions_only_go_up_whatever_the_sequence(
    registry: Registry, make_onnx: MakeOnnx, offers: list[int | None]
) -> None:
    """Model: auto takes newest + 1; an explicit version is kept iff above the newest."""
    name, path = f"m{next(_counter)}", make_onnx("prop", 1.0)
    newest = 0
    for offer in offers:
        if offer is not None and offer <= newest:
            with pytest.raises(RegistryError, match=f"version {offer} of '{name}' refused"):
                registry.push(path, name, version=offer)
            continue
        expected = newest + 1 if offer is None else offer
        assert registry.push(path, name, version=offer).version == expected
        newest = expected
    if newest:
        assert registry.get_model(name).latest == newest


def test_verify_reports_missing_short_and_corrupt_blobs(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    a, b, c = (registry.push(make_onnx(n, float(i)), n) for i, n in enumerate("abc"))
    assert registry.verify() == []
    registry.blob_path(a.artifact.sha256).unlink()
    registry.blob_path(b.artifact.sha256).write_bytes(b"short")
    data = bytearray(registry.blob_path(c.artifact.sha256).read_bytes())
    data[-1] ^= 0xFF
    registry.blob_path(c.artifact.sha256).write_bytes(bytes(data))

    problems = registry.verify()

    assert len(problems) == 3
    assert any(a.artifact.sha256 in p and "missing" in p for p in problems)
    assert any(b.artifact.sha256 in p and "is 5 bytes" in p for p in problems)
    assert any(c.artifact.sha256 in p and "corrupt" in p for p in problems)


def test_gc_removes_only_old_unreferenced_files(
    registry: Registry, make_onnx: MakeOnnx, make_card: Callable[..., ModelCard]
) -> None:
    import os

    kept = registry.push(make_onnx("kept", 1.0), "kws").artifact.sha256
    orphan_file = make_onnx("orphan", 2.0)
    with pytest.raises(RegistryError):  # refused after its file was stored
        registry.push(orphan_file, "kws", version=1)
    orphan = sha256_file(orphan_file)
    young = registry.blobs.put_file(make_onnx("young", 3.0)).sha256  # a push in progress
    old = registry.blob_path(orphan).stat().st_mtime - 7200
    os.utime(registry.blob_path(orphan), (old, old))

    assert registry.gc(dry_run=True) == [orphan]
    assert registry.blob_path(orphan).exists()
    assert registry.gc() == [orphan]

    assert not registry.blob_path(orphan).exists()
    assert registry.blob_path(kept).exists() and registry.blob_path(young).exists()
    assert registry.verify() == []
