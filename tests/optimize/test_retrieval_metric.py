"""Retrieval agreement: the task metric of embedding models (top-1 nearest neighbour against the
original's), usable without labels, in budgets and in the card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeloop.errors import InputError
from edgeloop.optimize import optimize
from edgeloop.optimize._measure import retrieval_agreement


def test_identical_embeddings_agree_everywhere() -> None:
    e = np.random.default_rng(0).standard_normal((20, 8))
    assert retrieval_agreement(e, e * 3.0) == 1.0  # cosine: the scale does not matter


def test_counts_the_samples_whose_neighbour_changed() -> None:
    # prepare: three tight pairs; moving sample 0 onto sample 4 changes three lookups: 0's
    # (now 4), 1's (its partner left: now 3) and 4's (0 is now closer than 5); 2, 3, 5 keep theirs
    ref = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0.1, 0.99, 0], [0, 0, 1], [0, 0.1, 1.0]])
    got = ref.copy()
    got[0] = [0.05, 0.0, 1.0]
    # act
    agree = retrieval_agreement(ref, got)
    # assert
    assert agree == pytest.approx(3 / 6)


def test_one_sample_is_refused() -> None:
    with pytest.raises(InputError, match="at least 2"):
        retrieval_agreement(np.ones((1, 4)), np.ones((1, 4)))


@pytest.mark.slow
def test_optimize_reports_and_budgets_retrieval_without_labels(
    quant_tokens: Path, quant_tokens_npz: Path, tmp_path: Path
) -> None:
    # act: the token model's data has no labels; a drop budget on retrieval still works
    card = optimize(
        quant_tokens,
        "int8-dynamic",
        quant_tokens_npz,
        out_dir=tmp_path / "o",
        metric="retrieval",
        max_drop=1.0,
    )
    # assert
    assert card.metrics["retrieval_original"] == 1.0
    assert 0.0 <= card.metrics["retrieval"] <= 1.0
