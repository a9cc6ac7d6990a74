"""Fixtures for the PyTorch compression tests (prune, sparsify, distill, qat, binarize).

Everything is tiny: digits (8x8) subsets, a CNN of width 8 trained for a few epochs, and a
user-defined module that is not from the zoo. One thread, so tests share the CPU politely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
nn = torch.nn


class UserNet(nn.Module):
    """A user's own model (not from the zoo): conv blocks, a named head, a flatten."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(24)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24 * 4, 32)
        self.out = nn.Linear(32, classes)

    def forward(self, x: Any) -> Any:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.out(torch.relu(self.fc(x)))


class HardCodedView(nn.Module):
    """Hard-codes a channel count in ``view``: torch-pruning cannot see it."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: Any) -> Any:
        x = self.c2(torch.relu(self.c1(x)))
        return self.fc(x.view(x.shape[0], 8 * 8 * 8))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def compress_digits() -> tuple[Any, Any]:
    """(train, val) digits: the whole train split (1258 samples) and 180 val samples."""
    from edgeloop.data import load_dataset

    return load_dataset("digits", "train"), load_dataset("digits", "val")


@pytest.fixture(scope="session")
def compress_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo CNN (width 8) trained on digits for 4 epochs, saved as a zoo checkpoint."""
    from edgeloop.zoo import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("compress") / "cnn.pt"
    train("cnn", "digits", 4, out=out, threads=1, width=8)
    return out


@pytest.fixture
def compress_zoo_model(compress_ckpt: Path) -> Any:
    from edgeloop.optimize import load_model

    model, _ = load_model(compress_ckpt)
    return model


@pytest.fixture
def compress_user_model() -> Any:
    torch.manual_seed(0)
    return UserNet()


@pytest.fixture
def compress_user_class() -> type:
    return UserNet


@pytest.fixture
def compress_hardcoded_model() -> Any:
    torch.manual_seed(0)
    return HardCodedView()


@pytest.fixture(scope="session")
def compress_user_trained(compress_digits: tuple[Any, Any]) -> Any:
    """UserNet trained on digits for 4 epochs (a teacher / a model to compress)."""
    from edgeloop.zoo import fit

    torch.manual_seed(0)
    model = UserNet()
    fit(model, compress_digits[0], None, epochs=4, lr=3e-3, batch_size=32)
    return model.eval()
