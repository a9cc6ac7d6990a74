"""Built-in datasets: contract, determinism, splits."""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.data import Dataset, list_datasets, load_dataset
from edgeloop.errors import DataError, FileError, UnknownNameError

SMALL = {
    "digits": {},
    "shapes": {"n": 300},
    "textures": {"n": 320},
    "har": {"subjects": 10, "windows": 2},
    "anomaly": {"n": 400},
    "tokens": {"n": 300},
}


def test_list_datasets_names_every_builtin() -> None:
    assert list_datasets() == sorted(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_builtin_splits_are_disjoint_deterministic_and_typed(name: str) -> None:
    splits = {s: load_dataset(name, s, seed=3, **SMALL[name]) for s in ("train", "val", "test")}
    again = load_dataset(name, "test", seed=3, **SMALL[name])
    other_seed = load_dataset(name, "test", seed=4, **SMALL[name])
    test = splits["test"]
    assert again.sha256 == test.sha256
    assert other_seed.sha256 != test.sha256
    assert len({d.sha256 for d in splits.values()}) == 3
    for split, d in splits.items():
        assert d.split == split and d.name == name and len(d) > 0
        assert d.y is not None and d.y.dtype == np.int64
        assert int(d.y.max()) < len(d.classes)
        for arr in d.inputs.values():
            assert arr.dtype in (np.float32, np.int64)
            assert len(arr) == len(d)
    total = sum(len(d) for d in splits.values())
    assert total <= len(load_dataset(name, "all", seed=3, **SMALL[name]))


def test_digits_shape_range_and_size() -> None:
    d = load_dataset("digits", "all")
    assert isinstance(d.x, np.ndarray)
    assert d.x.shape == (1797, 1, 8, 8)
    assert float(d.x.min()) >= 0.0 and float(d.x.max()) == 1.0
    assert d.input_names == ("input",)


def test_shapes_are_rgb_images_in_unit_range_with_ten_balanced_classes() -> None:
    d = load_dataset("shapes", "train", n=500)
    assert isinstance(d.x, np.ndarray) and d.x.shape[1:] == (3, 32, 32)
    assert float(d.x.min()) >= 0.0 and float(d.x.max()) <= 1.0
    assert d.y is not None
    counts = np.bincount(d.y, minlength=10)
    assert len(d.classes) == 10 and counts.min() >= 25


def test_har_splits_hold_disjoint_subjects() -> None:
    kw = {"subjects": 10, "windows": 2}
    subjects = {
        s: set(load_dataset("har", s, **kw).meta["subject"].tolist())
        for s in ("train", "val", "test")
    }
    assert not subjects["train"] & subjects["test"]
    assert not subjects["train"] & subjects["val"]
    assert not subjects["val"] & subjects["test"]
    d = load_dataset("har", "test", **kw)
    assert isinstance(d.x, np.ndarray) and d.x.shape[1:] == (3, 128)
    # the gravity vector is there: mean acceleration magnitude near 1 g
    assert 0.8 < float(np.linalg.norm(d.x.mean(axis=2), axis=1).mean()) < 1.2


def test_anomaly_train_is_normal_only_and_test_has_both_labels() -> None:
    train = load_dataset("anomaly", "train", n=800)
    test = load_dataset("anomaly", "test", n=800)
    assert train.task == test.task == "anomaly"
    assert train.y is not None and test.y is not None
    assert set(train.y.tolist()) == {0}
    assert set(test.y.tolist()) == {0, 1}
    assert test.classes == ("normal", "anomaly")


def test_tokens_has_two_int64_inputs_with_padding_masked() -> None:
    d = load_dataset("tokens", "test", n=200)
    assert d.input_names == ("input_ids", "attention_mask")
    assert isinstance(d.x, dict)
    ids, mask = d.x["input_ids"], d.x["attention_mask"]
    assert ids.dtype == mask.dtype == np.int64
    assert np.all(ids[mask == 0] == 0) and np.all(ids[mask == 1] > 0)
    assert int(ids.max()) < d.meta["vocab_size"]


def test_batches_are_views_covering_every_sample() -> None:
    d = load_dataset("tokens", "test", n=200)
    seen = 0
    for xb, yb in d.batches(16):
        assert isinstance(xb, dict) and yb is not None
        assert np.shares_memory(xb["input_ids"], d.inputs["input_ids"])
        assert len(xb["input_ids"]) == len(yb) <= 16
        seen += len(yb)
    assert seen == len(d)


def test_subset_takes_the_first_n_and_rehashes() -> None:
    d = load_dataset("digits", "test")
    s = d.subset(10)
    assert len(s) == 10 and s.sha256 != d.sha256
    assert np.array_equal(s.inputs["input"], d.inputs["input"][:10])


def test_cached_arrays_are_read_only() -> None:
    d = load_dataset("digits", "all")
    assert isinstance(d.x, np.ndarray)
    with pytest.raises(ValueError):
        d.x[0, 0, 0, 0] = 5.0


def test_dataset_checks_lengths() -> None:
    with pytest.raises(DataError, match="3 labels for 2 samples"):
        Dataset(
            "bad",
            "classification",
            np.zeros((2, 1), np.float32),
            np.zeros(3, np.int64),
            ("a",),
            "all",
        )


def test_unknown_name_lists_known_datasets() -> None:
    with pytest.raises(UnknownNameError, match="unknown dataset 'mnist'.*digits"):
        load_dataset("mnist")


def test_missing_path_is_a_file_error() -> None:
    with pytest.raises(FileError, match="does not exist"):
        load_dataset("nowhere/data.npz")


def test_bad_split_and_option_are_data_errors() -> None:
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_dataset("digits", "dev")
    with pytest.raises(DataError, match="takes no option"):
        load_dataset("digits", "test", n=5)


@pytest.mark.parametrize("kw", [{"steps": 10}, {"steps": 0}, {"windows": 0}, {"subjects": 1}])
def test_har_refuses_sizes_it_cannot_generate(kw: dict[str, int]) -> None:
    with pytest.raises(DataError, match=f"har {next(iter(kw))}="):
        load_dataset("har", "test", **{"subjects": 10, "windows": 2, **kw})


def test_har_takes_short_windows() -> None:
    d = load_dataset("har", "test", subjects=10, windows=2, steps=12)
    assert isinstance(d.x, np.ndarray) and d.x.shape[1:] == (3, 12)
