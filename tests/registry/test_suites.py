"""Continuous evaluation: a model's suite scores every pushed version, per segment, and a
regression against the baseline beyond the budget is found with its figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeloop.cli.app import app
from edgeloop.errors import RegistryError
from edgeloop.registry import Registry
from suite_models import linear_model, suite_file


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    r = Registry(f"sqlite:///{tmp_path / 'reg.db'}", tmp_path / "data")
    linear_model(tmp_path / "v1.onnx", (0.0, 0.0))
    r.push(tmp_path / "v1.onnx", "kws", alias="production")
    r.set_suite("kws", suite_file(tmp_path / "suite.npz"), segment_key="region", max_drop=0.02)
    return r


def _scores(reg: Registry, ref: str) -> dict[str | None, float]:
    v = reg.resolve(ref)
    return {e.dataset: e.value for e in v.evaluations if e.metric == "accuracy"}


def test_the_suite_scores_production_and_every_push_per_segment(
    reg: Registry, tmp_path: Path
) -> None:
    v2 = reg.push(linear_model(tmp_path / "v2.onnx", (0.5, 0.0)), "kws")

    first, second = _scores(reg, "kws@1"), _scores(reg, v2.ref)

    assert first == {"suite": 1.0, "suite:region=north": 1.0, "suite:region=south": 1.0}
    assert second["suite:region=south"] == 1.0
    assert 0.4 < second["suite:region=north"] < 0.6  # the class-1 half of north flips
    assert second["suite"] == pytest.approx(0.75 + second["suite:region=north"] / 4)


def test_a_regression_beyond_the_budget_is_found_with_its_figure(
    reg: Registry, tmp_path: Path
) -> None:
    v2 = reg.push(linear_model(tmp_path / "v2.onnx", (0.5, 0.0)), "kws")
    north = _scores(reg, v2.ref)["suite:region=north"]

    worse = reg.suite_regression("kws", v2.version, 1)

    assert worse is not None and worse.slice == "region=north"
    assert worse.drop == pytest.approx(1.0 - north)
    text = worse.message("production")
    assert f"a drop of {1.0 - north:.4f} beyond the budget 0.0200" in text
    assert text.startswith("kws@2 regresses against kws@1 (production)")


def test_a_version_within_the_budget_passes(reg: Registry, tmp_path: Path) -> None:
    v2 = reg.push(linear_model(tmp_path / "v2.onnx", (0.005, 0.0)), "kws")

    assert reg.suite_regression("kws", v2.version, 1) is None


def test_an_unscored_version_is_refused_with_the_command_that_scores_it(
    reg: Registry, tmp_path: Path
) -> None:
    other = suite_file(tmp_path / "other.npz")
    np.savez(other, x=np.eye(2, dtype=np.float32), y=np.array([0, 1]))
    with reg._write("test") as s:  # a new suite that version 1 has not been scored on
        from edgeloop.registry import _suites

        blob = reg.blobs.put_file(other)
        _suites.set_suite(
            s, "kws", blob, segment_key=None, metric="accuracy", max_drop=0.0, actor="t"
        )

    with pytest.raises(RegistryError, match=r"edgeloop registry suite run kws@1"):
        reg.suite_regression("kws", 1, 1)


def test_a_suite_without_labels_is_refused_and_nothing_is_stored(
    reg: Registry, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 2), dtype=np.float32))
    before = reg.get_suite("kws")

    with pytest.raises(RegistryError, match=r"no array 'y'"):
        reg.set_suite("kws", bad)

    assert reg.get_suite("kws") == before


def test_cli_suite_add_and_run(tmp_path: Path) -> None:
    db, data = f"sqlite:///{tmp_path / 'cli.db'}", str(tmp_path / "d")
    linear_model(tmp_path / "v1.onnx", (0.0, 0.0))
    base = ["registry", "--db", db, "--data", data]
    runner = CliRunner()
    assert (
        runner.invoke(app, [*base, "push", str(tmp_path / "v1.onnx"), "-n", "kws"]).exit_code == 0
    )

    added = runner.invoke(
        app,
        [
            *base,
            "suite",
            "add",
            "kws",
            "--data-file",
            str(suite_file(tmp_path / "s.npz")),
            "--segment-key",
            "region",
            "--max-drop",
            "0.01",
        ],
    )
    ran = runner.invoke(app, [*base, "suite", "run", "kws@1"])

    assert added.exit_code == 0, added.output
    assert "accuracy may drop at most 0.01, segments by region" in " ".join(added.output.split())
    assert ran.exit_code == 0, ran.output
    assert "kws@1 region=north: 1.0000 (100 rows)" in " ".join(ran.output.split())
