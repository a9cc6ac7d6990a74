"""Training-time augmentation: what each spec does to a batch, and how fit uses it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from edgeloop.data import Dataset
from edgeloop.errors import InputError
from edgeloop.zoo import augmentation, build_model, fit
from edgeloop.zoo._augment import augmentation_name

Cli = Callable[..., CompletedProcess[str]]


def _images(n: int = 16) -> torch.Tensor:
    return torch.arange(n * 3 * 10 * 12, dtype=torch.float32).reshape(n, 3, 10, 12)


def test_shift_moves_each_sample_within_its_padded_frame() -> None:
    x = _images()
    aug = augmentation("shift:2")
    assert aug is not None
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    offsets = set()
    for i in range(len(x)):
        found = [
            (a, b)
            for a in range(5)
            for b in range(5)
            if torch.equal(out[i], padded[i, :, a : a + 10, b : b + 12])
        ]
        assert found, f"sample {i} is not a 2-pixel shift of its input"
        offsets.add(found[0])
    assert len(offsets) > 4  # drawn per sample, not once per batch


def test_shift_works_on_time_series_and_flip_mirrors_about_half() -> None:
    series = torch.randn(8, 3, 50)
    aug = augmentation("shift")
    assert aug is not None
    assert aug(series, torch.Generator().manual_seed(1)).shape == series.shape
    x = _images(64)
    flip = augmentation("flip")
    assert flip is not None
    out = flip(x, torch.Generator().manual_seed(0))
    flipped = [bool(torch.equal(out[i], x[i].flip(2))) for i in range(64)]
    kept = [bool(torch.equal(out[i], x[i])) for i in range(64)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("spin", "unknown augmentation 'spin'"),
        ("shift+rotate", "unknown augmentation 'rotate'"),
        ("shift:0", "whole number of pixels"),
        ("shift:x", "whole number of pixels"),
        ("flip:3", "unknown augmentation 'flip:3'"),
        ("erase:0", "side must be a whole number"),
    ],
)
def test_bad_specs_are_refused_naming_the_part(spec: str, words: str) -> None:
    with pytest.raises(InputError, match=words):
        augmentation(spec)


def test_erase_blanks_one_square_per_image_to_its_mean() -> None:
    x = torch.rand(32, 3, 12, 12)
    erase = augmentation("erase:4")
    assert erase is not None
    out = erase(x, torch.Generator().manual_seed(0))
    changed = (out != x).any(dim=1)  # (N, H, W): pixels blanked in any channel
    per_image = changed.sum(dim=(1, 2))
    assert int(per_image.max()) <= 16 and int(per_image.min()) >= 4  # a 4x4 square, clipped
    for i in range(32):
        rows, cols = torch.nonzero(changed[i], as_tuple=True)
        assert int(rows.max() - rows.min()) < 4 and int(cols.max() - cols.min()) < 4
        mean = x[i].mean(dim=(1, 2))
        assert torch.allclose(out[i][:, rows[0], cols[0]], mean)
    default = augmentation("erase")
    assert default is not None
    blank = (default(x, torch.Generator().manual_seed(1)) != x).any(dim=1).sum(dim=(1, 2))
    assert int(blank.max()) <= 36  # half the side by default: 6x6


def test_none_and_names() -> None:
    assert augmentation(None) is None and augmentation("none") is None
    assert augmentation_name(" Shift+Flip ") == "shift+flip"
    assert augmentation_name("none") is None


def test_flip_refuses_a_series_and_shift_refuses_integer_tokens() -> None:
    flip, shift = augmentation("flip"), augmentation("shift")
    assert flip is not None and shift is not None
    with pytest.raises(InputError, match=r"\(N, C, H, W\); got \(4, 3, 20\)"):
        flip(torch.zeros(4, 3, 20), torch.Generator())
    with pytest.raises(InputError, match="float input batch"):
        shift(torch.zeros(4, 3, 20, dtype=torch.int64), torch.Generator())


def _data(n: int = 64) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.random((n, 3, 16, 16), dtype=np.float32)
    y = (x[:, 0, :8].mean(axis=(1, 2)) > x[:, 0, 8:].mean(axis=(1, 2))).astype(np.int64)
    return Dataset("toy", "classification", x, y, ("a", "b"), "train")


def _weights(augment: str | None, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(0)
    m = build_model("cnn", in_channels=3, num_classes=2, width=4)
    fit(m, _data(), epochs=2, batch_size=16, seed=seed, augment=augment)
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_fit_augments_training_batches_reproducibly() -> None:
    a, b = _weights("shift+flip"), _weights("shift+flip")
    assert torch.equal(a, b)  # the draws come from fit's seeded generator
    assert not torch.equal(a, _weights(None))
    assert not torch.equal(a, _weights("shift+flip", seed=1))


def test_fit_sees_augmented_batches_and_validation_is_left_alone() -> None:
    seen: list[torch.Tensor] = []

    def loss(model: torch.nn.Module, xb: object, yb: torch.Tensor | None) -> torch.Tensor:
        assert isinstance(xb, torch.Tensor)
        seen.append(xb.clone())
        return model(xb).sum() * 0.0

    data = _data(16)
    m = build_model("cnn", in_channels=3, num_classes=2, width=4)
    fit(m, data, data, epochs=1, batch_size=16, loss_fn=loss, augment="flip")
    train_batch, val_batch = seen[0], seen[-1]
    x = torch.from_numpy(data.x)
    # the order is shuffled; compare as sets of samples
    as_rows = {tuple(r.flatten()[:8].tolist()) for r in x}
    assert {tuple(r.flatten()[:8].tolist()) for r in val_batch} == as_rows
    mirrored = {tuple(r.flip(2).flatten()[:8].tolist()) for r in x}
    got = {tuple(r.flatten()[:8].tolist()) for r in train_batch}
    assert got & mirrored and got - as_rows


def test_fit_refuses_augmenting_multi_input_data() -> None:
    from edgeloop.data import load_dataset

    tokens = load_dataset("tokens", "train", n=64)
    m = build_model("transformer", dim=16, heads=2, layers=1, ff=32)
    with pytest.raises(InputError, match="works on one image or series input"):
        fit(m, tokens, epochs=1, augment="shift")


@pytest.mark.slow
def test_cli_train_refuses_an_unknown_augmentation(cli: Cli, tmp_path: Path) -> None:
    proc = cli("train", "cnn", "--epochs", "1", "--augment", "spin", "--out", "m.pt")
    assert proc.returncode == 10
    assert "unknown augmentation 'spin'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m.pt").exists()
