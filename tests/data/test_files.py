"""Loaders for a user's own data: .npz, CSV and image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeloop.data import load_dataset
from edgeloop.errors import DataError, FileError


def test_npz_with_x_and_y_loads_whole_file_by_default(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((50, 4)).astype(np.float64)
    y = np.arange(50) % 5
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_dataset(tmp_path / "d.npz")
    assert d.split == "all" and len(d) == 50
    assert isinstance(d.x, np.ndarray) and d.x.dtype == np.float32
    assert d.y is not None and np.array_equal(d.y, y)
    assert d.classes == ("0", "1", "2", "3", "4")


def test_npz_splits_partition_the_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.arange(100.0).reshape(100, 1), y=np.arange(100) % 2)
    parts = [load_dataset(str(tmp_path / "d.npz"), s, seed=1) for s in ("train", "val", "test")]
    values = np.concatenate([p.inputs["input"][:, 0] for p in parts])
    assert sorted(values.tolist()) == list(range(100))
    assert [len(p) for p in parts] == [70, 10, 20]


def test_npz_with_one_array_per_input_keeps_names_and_int64(tmp_path: Path) -> None:
    ids = np.ones((8, 6), dtype=np.int32)
    np.savez(
        tmp_path / "t.npz",
        input_ids=ids,
        attention_mask=ids,
        y=np.zeros(8, np.int64),
        classes=np.array(["neg", "pos"]),
    )
    d = load_dataset(tmp_path / "t.npz")
    assert d.input_names == ("input_ids", "attention_mask")
    assert d.inputs["input_ids"].dtype == np.int64
    assert d.classes == ("neg", "pos")


def test_npz_without_labels_is_an_error_unless_allowed(tmp_path: Path) -> None:
    np.savez(tmp_path / "u.npz", x=np.zeros((3, 2)))
    with pytest.raises(DataError, match="has no labels"):
        load_dataset(tmp_path / "u.npz")
    assert load_dataset(tmp_path / "u.npz", require_labels=False).y is None


def test_a_file_that_is_not_npz_is_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_text("hello")
    with pytest.raises(FileError, match="not a readable .npz"):
        load_dataset(tmp_path / "bad.npz")


def test_csv_with_string_labels(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n")
    d = load_dataset(tmp_path / "d.csv")
    assert isinstance(d.x, np.ndarray) and d.x.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert d.classes == ("cat", "dog")
    assert d.y is not None and d.y.tolist() == [0, 1, 0]


def test_csv_with_named_label_column(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("target,f1\n1,0.5\n0,0.25\n")
    d = load_dataset(tmp_path / "d.csv", label_column="target")
    assert d.y is not None and d.y.tolist() == [1, 0]
    assert d.inputs["input"].tolist() == [[0.5], [0.25]]


def test_csv_without_labels_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"'.*d.csv' has no labels"):
        load_dataset(tmp_path / "d.csv")


def test_csv_with_text_feature_names_the_column(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,colour,label\n1,red,0\n")
    with pytest.raises(DataError, match=r"line 2: column 'colour' is 'red', expected a number"):
        load_dataset(tmp_path / "d.csv")


def test_csv_missing_named_label_column(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="no column 'y'; columns are a, b"):
        load_dataset(tmp_path / "d.csv", label_column="y")


def test_image_folder_loads_resized_rgb(tmp_path: Path) -> None:
    from PIL import Image

    for c, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20 + i, 10), colour).save(tmp_path / "imgs" / c / f"{i}.png")
    d = load_dataset(tmp_path / "imgs", image_size=16)
    assert isinstance(d.x, np.ndarray) and d.x.shape == (6, 3, 16, 16)
    assert d.classes == ("blue", "red")
    assert d.y is not None and d.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert float(d.x[0, 2].mean()) == pytest.approx(1.0) and float(
        d.x[3, 0].mean()
    ) == pytest.approx(1.0)


def test_empty_image_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(tmp_path / "imgs")


def test_unsupported_file_kind(tmp_path: Path) -> None:
    (tmp_path / "d.parquet").write_bytes(b"x")
    with pytest.raises(FileError, match="expected a .npz file, a .csv file or a folder"):
        load_dataset(tmp_path / "d.parquet")
