"""The monitoring reference at pack time: from a model and held-out data (device layer), the
embedding output for wide inputs (build layer, onnx), and ``edgeloop pack --reference``."""

from __future__ import annotations

import numpy as np
import pytest

from classifier_model import CLASSES, classifier_bytes, sample
from edgeloop.bundle import model_reference, verify
from edgeloop.errors import InputError
from edgeloop.monitor.sketch import MonitorReference, WindowSketch
from edgeloop.runtime import Session

WIDE = 64


def mlp_bytes(seed: int = 0) -> bytes:
    """x (n, 64) -> relu(x W1) = h (n, 16) -> softmax(h W2 + b): an image-like wide input."""
    from onnx_writer import FLOAT, model_bytes

    rng = np.random.default_rng(seed)
    return model_bytes(
        [("MatMul", ["x", "w1"], ["z1"]), ("Relu", ["z1"], ["h"]),
         ("MatMul", ["h", "w2"], ["z2"]), ("Add", ["z2", "b"], ["z"]),
         ("Softmax", ["z"], ["probs"], {"axis": 1})],
        [("x", FLOAT, ["n", WIDE])],
        [("probs", FLOAT, ["n", 3])],
        {"w1": rng.normal(size=(WIDE, 16)).astype(np.float32) / 8,
         "w2": rng.normal(size=(16, 3)).astype(np.float32),
         "b": np.zeros(3, dtype=np.float32)},
    )


def test_a_narrow_model_is_watched_per_feature():
    x, y = sample(500, np.random.default_rng(0))
    ref = model_reference(classifier_bytes(), x, y, classes=CLASSES)
    assert [f.name for f in ref.features] == ["x0", "x1", "x2", "x3"]
    assert ref.output_kind == "probabilities" and ref.projection is None
    assert ref.calibration is not None and 0.5 < (ref.accuracy or 0) < 0.9


def test_a_wide_model_without_an_embedding_output_is_watched_through_a_pca_of_its_input():
    x = np.random.default_rng(1).normal(size=(300, WIDE)).astype(np.float32)
    ref = model_reference(mlp_bytes(), x)
    assert ref.projection is not None and ref.projection.source == "input"
    assert ref.width == WIDE


def test_the_embedding_output_is_added_at_pack_time_and_watched():
    pytest.importorskip("onnx")
    from edgeloop.optimize import EMBEDDING_OUTPUT, add_embedding_output

    model, name = add_embedding_output(mlp_bytes())
    assert name == EMBEDDING_OUTPUT
    x = np.random.default_rng(2).normal(size=(300, WIDE)).astype(np.float32)
    before = Session(mlp_bytes(), providers=["CPUExecutionProvider"]).run({"x": x})
    after = Session(model, providers=["CPUExecutionProvider"]).run({"x": x})
    np.testing.assert_array_equal(before["probs"], after["probs"])  # nothing else changed
    assert after[name].shape == (300, 16) and np.all(after[name] >= 0)  # the relu activations
    ref = model_reference(model, x, embedding_output=name)
    assert ref.projection is not None and ref.projection.source == "embedding"
    assert ref.projection.output == name and ref.width == 16
    assert add_embedding_output(model) == (model, name)  # idempotent


def test_a_graph_without_a_classifier_head_is_refused():
    pytest.importorskip("onnx")
    from edgeloop.optimize import add_embedding_output
    from onnx_writer import FLOAT, model_bytes

    model = model_bytes([("Relu", ["x"], ["y"])], [("x", FLOAT, ["n", 4])],
                        [("y", FLOAT, ["n", 4])])
    with pytest.raises(InputError, match="not a classifier head|no MatMul"):
        add_embedding_output(model)


def test_edgeloop_pack_reference(cli, tmp_path, release_key, trust, device_key):
    from edgeloop.bundle import save_private_key, save_public_key

    pytest.importorskip("onnx")
    (tmp_path / "m.onnx").write_bytes(mlp_bytes())
    (tmp_path / "card.json").write_text('{"name": "wide"}')
    x = np.random.default_rng(3).normal(size=(400, WIDE)).astype(np.float32)
    np.savez(tmp_path / "ref.npz", x=x, y=np.random.default_rng(4).integers(0, 3, 400))
    save_private_key(tmp_path / "release.pem", release_key)
    save_public_key(tmp_path / "dev.pub.pem", device_key.public_key())
    args = ["pack", "m.onnx", "--card", "card.json", "--version", "1", "--sign", "release.pem",
            "--encrypt-to", "dev.pub.pem", "--out", "m.elb"]
    r = cli(*args, "--reference", "ref.npz")
    assert r.returncode == 0, r.stderr
    assert "embedding view" in r.stdout
    manifest = verify((tmp_path / "m.elb").read_bytes(), trust)
    ref = MonitorReference.from_dict(manifest.monitor)
    assert ref.projection is not None and ref.projection.source == "embedding"
    assert [o.name for o in manifest.outputs] == ["probs", "edgeloop_embedding"]
    # the device sketches from the embedding the model outputs
    out = Session(mlp_bytes(), providers=["CPUExecutionProvider"]).run({"x": x[:5]})
    assert WindowSketch(ref).update(np.zeros((5, 16)), out["probs"]) is not None
    bad = cli(*args[:-2], "--out", "n.elb", "--reference", "card.json")
    assert bad.returncode != 0 and "card.json" in bad.stderr


@pytest.mark.parametrize("data", [b"PK\x03\x04 not a model", b""])
def test_bytes_that_are_not_a_model_are_refused_as_such(data: bytes) -> None:
    pytest.importorskip("onnx")
    from edgeloop.errors import ModelFormatError
    from edgeloop.optimize import add_embedding_output

    with pytest.raises(ModelFormatError, match="not an ONNX model"):
        add_embedding_output(data)
