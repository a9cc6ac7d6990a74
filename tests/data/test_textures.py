"""The ``textures`` task and the ``sensor_shift`` transform: contract, balance, determinism."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest

from edgeloop.data import TEXTURE_CLASSES, load_dataset, sensor_shift
from edgeloop.data._textures import DEFAULT_DIFFICULTY, textures_arrays
from edgeloop.errors import DataError

Cli = Callable[..., CompletedProcess[str]]


def test_textures_are_rgb_float32_images_in_unit_range() -> None:
    d = load_dataset("textures", "train", n=480)

    assert isinstance(d.x, np.ndarray)
    assert d.x.shape == (len(d), 3, 32, 32) and d.x.dtype == np.float32
    assert float(d.x.min()) >= 0.0 and float(d.x.max()) <= 1.0
    assert d.y is not None and d.y.dtype == np.int64
    assert d.classes == TEXTURE_CLASSES and len(d.classes) == 16
    assert d.classes[0] == "circle-solid" and d.classes[-1] == "plus-dots"


def test_every_class_has_the_same_number_of_images_within_one() -> None:
    x, y, classes = textures_arrays(seed=5, n=1000)

    counts = np.bincount(y, minlength=len(classes))

    assert counts.sum() == 1000 == len(x)
    assert counts.max() - counts.min() <= 1


def test_splits_are_stratified_so_each_split_holds_every_class() -> None:
    for split in ("train", "val", "test"):
        d = load_dataset("textures", split, n=800)
        assert d.y is not None
        assert set(np.unique(d.y).tolist()) == set(range(16)), split


def test_same_seed_same_bytes_other_seed_other_images() -> None:
    a, ya, _ = textures_arrays(seed=2, n=160)
    b, yb, _ = textures_arrays(seed=2, n=160)
    c, _, _ = textures_arrays(seed=3, n=160)

    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, c)


def test_size_option_sets_the_image_side() -> None:
    x, _, _ = textures_arrays(seed=0, n=32, size=48)

    assert x.shape == (32, 3, 48, 48)


def test_images_of_one_class_vary_and_classes_overlap_in_colour() -> None:
    # hard through its inputs: no class is told apart by its mean colour
    x, y, _ = textures_arrays(seed=0, n=1600)

    per_class = np.stack([x[y == c].mean(axis=(0, 2, 3)) for c in range(16)])
    within = x.mean(axis=(2, 3)).std(axis=0)

    assert float(np.ptp(per_class, axis=0).max()) < float(within.min())
    assert float(x[y == 0].std(axis=0).mean()) > 0.2


def test_sensor_shift_severity_zero_is_the_identity_copy() -> None:
    x = load_dataset("textures", "test", n=320).x
    assert isinstance(x, np.ndarray)

    out = sensor_shift(x, 0.0)

    assert np.array_equal(out, x) and out is not x


def test_sensor_shift_changes_brightness_contrast_and_sharpness_more_with_severity() -> None:
    x = load_dataset("textures", "test", n=320).x
    assert isinstance(x, np.ndarray)

    mild, medium = sensor_shift(x, 0.5, seed=1), sensor_shift(x, 1.0, seed=1)
    strong = sensor_shift(x, 2.0, seed=1)

    def sharpness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a, axis=3)).mean())

    assert mild.shape == strong.shape == x.shape and strong.dtype == np.float32
    assert float(mild.min()) >= 0.0 and float(strong.max()) <= 1.0
    assert float(x.mean()) < float(mild.mean()) < float(strong.mean())
    assert float(strong.std()) < float(mild.std()) < float(x.std())
    # up to severity 1 the blur removes more edge energy than the sensor noise adds back
    assert sharpness(medium) < sharpness(mild) < sharpness(x)
    # a colour cast: the channel means move by different amounts
    moved = strong.mean(axis=(0, 2, 3)) - x.mean(axis=(0, 2, 3))
    assert float(np.ptp(moved)) > 0.02


def test_sensor_shift_is_deterministic_by_seed() -> None:
    x = load_dataset("textures", "test", n=160).x
    assert isinstance(x, np.ndarray)

    assert np.array_equal(sensor_shift(x, 1.0, seed=4), sensor_shift(x, 1.0, seed=4))
    assert not np.array_equal(sensor_shift(x, 1.0, seed=4), sensor_shift(x, 1.0, seed=5))


@pytest.mark.parametrize(
    ("x", "severity", "message"),
    [
        (np.zeros((2, 3, 8, 8), np.float32), -0.5, "severity must be in [0, 3], got -0.5"),
        (np.zeros((2, 3, 8, 8), np.float32), float("nan"), "severity must be in [0, 3]"),
        (np.zeros((2, 3, 8, 8), np.float32), 4.0, "severity must be in [0, 3], got 4.0"),
        (np.zeros((2, 8), np.float32), 1.0, "needs images (N, C, H, W); got shape (2, 8)"),
    ],
)
def test_sensor_shift_refuses_bad_input(x: np.ndarray, severity: float, message: str) -> None:
    with pytest.raises(DataError) as e:
        sensor_shift(x, severity)
    assert message in str(e.value)


@pytest.mark.slow
def test_train_export_and_evaluate_on_textures_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    r = cli(
        "train", "mobilenet", "--dataset", "textures", "--epochs", "1", "--threads", "1",
        "--out", "m.pt", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)
    assert trained["dataset"] == "textures" and trained["epochs"] == 1
    assert trained["arch_kwargs"]["num_classes"] == 16
    assert 0.0 <= trained["metrics"]["accuracy"] <= 1.0

    r = cli("export", "m.pt", "--out", "m.onnx")
    assert r.returncode == 0, r.stderr
    r = cli("evaluate", "m.onnx", "--dataset", "textures", "--json")
    assert r.returncode == 0, r.stderr
    scored = json.loads(r.stdout)

    assert scored["dataset"] == "textures"
    assert scored["metrics"]["samples"] == 2000
    # the ONNX model scores the same test split the trainer scored
    assert scored["metrics"]["accuracy"] == pytest.approx(trained["metrics"]["accuracy"], abs=1e-3)


def test_difficulty_zero_is_clean_and_more_difficulty_more_clutter_and_noise() -> None:
    easy, _, _ = textures_arrays(seed=1, n=160, difficulty=0.0)
    hard, _, _ = textures_arrays(seed=1, n=160, difficulty=1.0)

    def corner_edges(a: np.ndarray) -> float:  # the top-left corner is background
        return float(np.abs(np.diff(a[:, :, :5, :5], axis=3)).mean())

    assert corner_edges(easy) < 0.05 < corner_edges(hard)


def test_the_knob_moves_inputs_only_labels_stay_the_same() -> None:
    _, y_easy, _ = textures_arrays(seed=4, n=320, difficulty=0.0)
    _, y_hard, _ = textures_arrays(seed=4, n=320, difficulty=1.0)

    assert np.array_equal(y_easy, y_hard)


def test_default_difficulty_is_the_documented_one() -> None:
    a, _, _ = textures_arrays(seed=0, n=64)
    b, _, _ = textures_arrays(seed=0, n=64, difficulty=DEFAULT_DIFFICULTY)

    assert np.array_equal(a, b)
    assert 0.0 < DEFAULT_DIFFICULTY < 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"difficulty": 1.5}, "textures option difficulty must be in [0, 1], got 1.5"),
        ({"difficulty": -0.1}, "textures option difficulty must be in [0, 1], got -0.1"),
        ({"n": 0}, "textures needs n >= 1 and size >= 8, got n=0"),
    ],
)
def test_bad_options_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(DataError) as e:
        load_dataset("textures", "test", **options)
    assert message in str(e.value)
