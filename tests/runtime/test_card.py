"""``describe_model`` / ``edgeloop card``: a ModelCard for an ONNX model built elsewhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest

from edgeloop.artifacts import ModelCard, sha256_file
from edgeloop.errors import ModelFormatError
from edgeloop.runtime import card_path, describe_model

Cli = Callable[..., CompletedProcess[str]]


def _labelled(path: Path, n: int) -> Path:
    x = np.random.default_rng(2).standard_normal((n, 3)).astype(np.float32)
    np.savez(path, x=x, y=np.argmax(x, axis=1))
    return path


def test_describe_model_reads_the_file_without_reading_its_graph(
    identity_classifier: Path,
) -> None:
    card = describe_model(identity_classifier)  # runtime reads no graphs: a device has no onnx

    assert card.sha256 == sha256_file(identity_classifier)
    assert [(s.name, s.dtype, s.shape) for s in card.inputs] == [("x", "float32", ("batch", 3))]
    assert card.params is None and card.macs is None


def test_describe_model_reads_the_file(identity_classifier: Path) -> None:
    pytest.importorskip("onnx")
    from edgeloop.analysis import graph_stats

    card = describe_model(identity_classifier, graph_stats=graph_stats)

    assert card.name == "clf"
    assert card.sha256 == sha256_file(identity_classifier)
    assert card.size_bytes == identity_classifier.stat().st_size
    assert [(s.name, s.dtype, s.shape) for s in card.inputs] == [("x", "float32", ("batch", 3))]
    assert [(s.name, s.shape) for s in card.outputs] == [("logits", ("batch", 3))]
    assert card.params == 12  # W 3x3 + b 3
    assert card.macs == 9  # one 1x3 @ 3x3 MatMul per sample
    assert card.metrics == {} and card.dataset is None


def test_describe_model_scores_labelled_data(identity_classifier: Path, tmp_path: Path) -> None:
    from edgeloop.data import load_dataset

    data = load_dataset(_labelled(tmp_path / "d.npz", 40))

    card = describe_model(identity_classifier, data=data, name="ident")

    assert card.name == "ident"
    assert card.metrics["accuracy"] == 1.0 and card.metrics["samples"] == 40.0
    assert card.dataset == "d" or card.dataset == data.name
    assert [ref.role for ref in card.lineage] == ["dataset"]
    assert card.lineage[0].sha256 == data.sha256


def test_describe_model_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")

    with pytest.raises(ModelFormatError):
        describe_model(bad)


def test_cli_card_writes_the_card_beside_the_model(
    cli: Cli, identity_classifier: Path, tmp_path: Path
) -> None:
    data = _labelled(tmp_path / "d.npz", 25)

    r = cli("card", identity_classifier, "--dataset", data, "--json")
    table = cli("card", identity_classifier, "--out", tmp_path / "c.json")

    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    written = ModelCard.load(card_path(identity_classifier))
    assert written.to_dict() == ModelCard.from_dict(printed).to_dict()
    assert written.metrics["samples"] == 25.0 and written.metrics["accuracy"] == 1.0
    assert table.returncode == 0, table.stderr
    assert ModelCard.load(tmp_path / "c.json").sha256 == sha256_file(identity_classifier)
    assert "x float32 [batch, 3]" in table.stdout


def test_cli_card_of_a_missing_model_is_one_line(cli: Cli, tmp_path: Path) -> None:
    r = cli("card", tmp_path / "absent.onnx")

    assert r.returncode == 11, r.stderr
    assert r.stderr.count("\n") == 1 and "absent.onnx" in r.stderr
    assert not card_path(tmp_path / "absent.onnx").exists()
