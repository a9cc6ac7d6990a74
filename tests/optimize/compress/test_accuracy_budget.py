"""prune, qat and binarize report accuracy before/after and warn beyond ``max_drop``, as
sparsify does (one shared ``record_accuracy``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from edgeloop.optimize import binarize, prune, qat

pytestmark = pytest.mark.slow

# Each pass set up to wreck the trained model: most channels gone without fine-tuning, or
# training at a learning rate far too high.
WRECK: dict[str, Callable[..., Any]] = {
    "prune": lambda m, train, val, **kw: prune(
        m, ratio=0.9, data=train, val=val, finetune_epochs=0, **kw
    ),
    "qat": lambda m, train, val, **kw: qat(m, train, val, epochs=1, lr=5.0, **kw),
    "binarize": lambda m, train, val, **kw: binarize(
        m, train, val, epochs=1, lr=5.0, keep_first_last=False, **kw
    ),
}


@pytest.mark.parametrize("name", list(WRECK))
def test_a_drop_beyond_the_budget_warns_first_and_says_so_in_the_details(
    name: str, compress_user_trained: Any, compress_digits: Any
) -> None:
    train, val = compress_digits

    res = WRECK[name](copy.deepcopy(compress_user_trained), train.subset(300), val, max_drop=0.01)

    d = res.details
    assert d["accuracy_before"] > 0.8  # the float model read
    assert d["accuracy_drop"] == pytest.approx(d["accuracy_before"] - d["accuracy_after"])
    assert d["accuracy_drop"] > 0.01
    assert d["max_drop"] == 0.01
    assert d["within_budget"] is False
    assert res.warnings[0].startswith("val accuracy fell")
    assert f"{100 * d['accuracy_before']:.2f}%" in res.warnings[0]


def test_prune_within_the_budget_does_not_warn(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    train, val = compress_digits

    res = WRECK["prune"](copy.deepcopy(compress_user_trained), train, val, max_drop=1.0)

    assert res.details["within_budget"] is True
    assert not any(w.startswith("val accuracy fell") for w in res.warnings)


def test_no_budget_reports_the_drop_and_no_verdict(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    train, val = compress_digits

    res = WRECK["prune"](copy.deepcopy(compress_user_trained), train, val, max_drop=None)

    assert res.details["accuracy_drop"] > 0.01
    assert "within_budget" not in res.details
    assert not any(w.startswith("val accuracy fell") for w in res.warnings)
