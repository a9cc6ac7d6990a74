"""Knowledge distillation: soft targets plus labels; mismatched students refused up front."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from edgeloop.errors import InputError, PassError, UnknownNameError
from edgeloop.optimize import distill
from edgeloop.optimize._distill import distillation_loss


def test_loss_is_hard_ce_at_alpha_zero_and_zero_when_student_matches_teacher() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(distillation_loss(logits, logits * 3, labels, 4.0, 0.0), ce)
    assert float(distillation_loss(logits, logits, labels, 4.0, 1.0)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_distill_soft_targets_alone_teach_a_zoo_student(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    from edgeloop.zoo import build_model, predict

    train, val = compress_digits
    torch.manual_seed(0)
    student = build_model("cnn", in_channels=1, num_classes=10, width=4)
    # alpha=1: the labels play no part, only the teacher's soft targets
    res = distill(
        compress_user_trained, student, train, val, epochs=3, lr=3e-2, alpha=1.0, temperature=1.0
    )
    d = res.details
    assert res.model is student
    assert d["student_macs"] < 0.5 * d["teacher_macs"]
    agree = (
        predict(student, val).argmax(1) == predict(compress_user_trained, val).argmax(1)
    ).mean()
    assert agree > 0.5  # chance is about 0.1
    assert d["student_accuracy"] > 0.5


def test_distill_with_feature_matching_across_sizes(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    from edgeloop.zoo import build_model

    train, val = compress_digits
    torch.manual_seed(0)
    student = build_model("cnn", in_channels=1, num_classes=10, width=4)
    keys = set(student.state_dict())
    # student features.3.0: 8 channels at 4x4; teacher conv2: 24 channels at 8x8
    res = distill(
        compress_user_trained,
        student,
        train,
        val,
        epochs=3,
        lr=3e-2,
        features=[("features.3.0", "conv2")],
    )
    assert set(res.model.state_dict()) == keys  # the learned projection is not left behind
    assert res.details["features"] == [["features.3.0", "conv2"]]
    assert res.details["student_accuracy"] > 0.3


def test_distill_mismatched_student_refused_before_training(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 7))  # 7 classes, not 10
    before = copy.deepcopy(student.state_dict())
    with pytest.raises(PassError, match=r"outputs shape \(2, 7\).*\(2, 10\)"):
        distill(compress_user_trained, student, compress_digits[0], epochs=50)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"epochs": 0}, "epochs"),
        ({"augment": "rotate"}, "unknown augmentation 'rotate'"),
    ],
)
def test_distill_bad_settings(
    compress_user_trained: Any, compress_digits: Any, kw: dict[str, Any], match: str
) -> None:
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(InputError, match=match):
        distill(compress_user_trained, student, compress_digits[0], **kw)


def test_distill_unknown_feature_layer(compress_user_trained: Any, compress_digits: Any) -> None:
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(UnknownNameError, match="'conv9'"):
        distill(compress_user_trained, student, compress_digits[0], features=[("1", "conv9")])


class _Recorder(torch.nn.Module):
    """Wraps a module and keeps every input batch it was called with in training."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[tuple[torch.Tensor, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.detach().clone(), self.training))
        out: torch.Tensor = self.inner(x)
        return out


def test_distill_teacher_sees_the_students_augmented_batch(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    """Consistent teaching: the soft targets are for the very inputs the student trains on."""
    train = compress_digits[0].subset(64)
    teacher = _Recorder(copy.deepcopy(compress_user_trained))
    student = _Recorder(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    res = distill(teacher, student, train, epochs=1, batch_size=32, augment="shift:2")
    assert res.details["augment"] == "shift:2"
    trained = [x for x, training in student.seen if training]
    taught = [x for x, _ in teacher.seen]
    assert len(trained) == 2
    for s_batch in trained:
        assert any(torch.equal(s_batch, t) for t in taught)
    raw = torch.from_numpy(train.x)
    # and they really are augmented: not rows of the raw training data
    assert not all(any(torch.equal(r, x) for x in raw) for r in trained[0])


def test_loss_skips_unlabelled_samples_in_the_label_term() -> None:
    s = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 3.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, -1, 2])
    known = torch.nn.functional.cross_entropy(s[[0, 2]], labels[[0, 2]])
    assert torch.allclose(distillation_loss(s, t, labels, 2.0, 0.0), known)
    none = torch.tensor([-1, -1, -1])
    soft_only = distillation_loss(s, t, none, 2.0, 0.5)
    assert torch.isfinite(soft_only)
    assert torch.allclose(soft_only, 0.5 * distillation_loss(s, t, labels, 2.0, 1.0))


def test_distill_learns_from_unlabelled_inputs_too(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    from edgeloop.zoo import build_model

    train, val = compress_digits
    few, rest = train.subset(60), train.take(slice(60, None)).x  # inputs only, no labels
    torch.manual_seed(0)
    student = build_model("cnn", in_channels=1, num_classes=10, width=4)
    res = distill(
        compress_user_trained, student, few, val, epochs=3, lr=3e-2, alpha=0.9,
        temperature=4.0, unlabeled=rest,
    )  # fmt: skip
    d = res.details
    assert d["labelled_samples"] == 60 and d["unlabeled_samples"] == len(train) - 60
    torch.manual_seed(0)
    alone = build_model("cnn", in_channels=1, num_classes=10, width=4)
    only = distill(compress_user_trained, alone, few, val, epochs=3, lr=3e-2, alpha=0.9,
                   temperature=4.0)  # fmt: skip
    assert only.details["unlabeled_samples"] == 0
    # twenty times the inputs: the teacher's targets on them teach what 60 labels cannot
    assert d["student_accuracy"] > only.details["student_accuracy"] + 0.1


def test_distill_unlabelled_data_is_checked_before_training(
    compress_user_trained: Any, compress_digits: Any
) -> None:
    import numpy as np

    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    before = copy.deepcopy(student.state_dict())
    train = compress_digits[0]
    wrong = np.zeros((5, 1, 6, 6), dtype=np.float32)
    with pytest.raises(InputError, match=r"shaped \{'input': \(1, 6, 6\)\}.*\(1, 8, 8\)"):
        distill(compress_user_trained, student, train, unlabeled=wrong)
    with pytest.raises(InputError, match="alpha > 0"):
        distill(compress_user_trained, student, train, alpha=0.0, unlabeled=train.x[:5])
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
