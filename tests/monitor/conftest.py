"""A synthetic classifier that is calibrated by construction: labels are drawn from the
model's own softmax, so P(top-1 right | confidence c) = c, and a covariate shift changes the
accuracy in a way calibrated confidences can follow."""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.monitor.sketch import MonitorReference, build_reference

FEATURES = 6
WEIGHTS = np.array([[2.0, 0.0, -1.0], [0.0, 1.5, 0.5], [-0.5, 0.5, 1.0]])


def classifier_data(
    n: int, rng: np.random.Generator, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (n, FEATURES) ~ N(shift on feature 0, 1), logits, labels drawn from softmax."""
    x = rng.normal(size=(n, FEATURES))
    x[:, 0] += shift
    logits = x[:, :3] @ WEIGHTS
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return x, logits, y


@pytest.fixture(scope="session")
def reference() -> MonitorReference:
    x, logits, y = classifier_data(5000, np.random.default_rng(1234))
    return build_reference(x, logits, y, output_kind="logits", classes=("a", "b", "c"))
