"""benchmarks/monitor.py --evidently-from: Evidently's verdicts are reused only for the same
windows (digests, or for older results the window config and the trained model)."""

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_monitor", ROOT / "benchmarks/monitor.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_monitor", mod)  # dataclasses look their module up
    spec.loader.exec_module(sys.modules["bench_monitor"])
    return sys.modules["bench_monitor"]


def _out(model: dict[str, float]) -> dict[str, Any]:
    return {"model": model, "false_alarm_rate": {"edgeloop": {"100": 0.0}},
            "shifts": {"label": {"0.6": {"100": {"detection_rate": {"edgeloop": 1.0}}}}}}


def _prior(digests: dict[str, str] | None) -> dict[str, Any]:
    task = {"model": {"accuracy_test": 0.9}, "evidently": {"windows": 3},
            "false_alarm_rate": {"edgeloop": {"100": 0.5}, "evidently": {"100": 1.0}},
            "shifts": {"label": {"0.6": {"100": {"detection_rate": {
                "edgeloop": 0.1, "evidently": 0.7, "evidently_dataset_drift": 0.2}}}}}}
    if digests is not None:
        task["evidently_window_sha256"] = digests
    return {"tasks": {"har": task}, "config": {"seed": 0}}


def test_window_digest_sees_every_value() -> None:
    b = _bench()
    ref, wins = np.zeros((4, 3)), [np.ones((2, 3)), np.ones((2, 3))]
    d = b.windows_sha256(ref, wins)
    assert d == b.windows_sha256(ref.copy(), [w.copy() for w in wins])
    wins[1][1, 2] = 1.0 + 1e-6
    assert d != b.windows_sha256(ref, wins)
    assert d != b.windows_sha256(ref, [np.ones((3, 2)), np.ones((2, 3))])  # same bytes, shape


def test_reuse_copies_verdicts_only_for_equal_windows(tmp_path: Path) -> None:
    b = _bench()
    out = _out({"accuracy_test": 0.9})
    b.reuse_evidently(_prior({"none_0_100": "aa"}), tmp_path, "har", out, {"none_0_100": "aa"})
    assert out["false_alarm_rate"]["evidently"] == {"100": 1.0}
    det = out["shifts"]["label"]["0.6"]["100"]["detection_rate"]
    assert det == {"edgeloop": 1.0, "evidently": 0.7, "evidently_dataset_drift": 0.2}
    assert out["evidently"]["reuse_check"] == "sha256"
    with pytest.raises(SystemExit, match="windows differ"):
        b.reuse_evidently(_prior({"none_0_100": "aa"}), tmp_path, "har",
                          _out({"accuracy_test": 0.9}), {"none_0_100": "bb"})
    with pytest.raises(SystemExit, match="no Evidently results"):
        b.reuse_evidently(_prior(None), tmp_path, "shapes", _out({}), {})


def test_older_results_need_the_same_config_and_model(tmp_path: Path) -> None:
    b = _bench()
    out = _out({"accuracy_test": 0.9})
    b.reuse_evidently(_prior(None), tmp_path, "har", out, {"none_0_100": "aa"})
    assert out["evidently"]["reuse_check"] == "config+model"
    with pytest.raises(SystemExit, match="another model"):
        b.reuse_evidently(_prior(None), tmp_path, "har", _out({"accuracy_test": 0.91}), {})
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"tasks": {}, "config": dict.fromkeys(b.WINDOW_CONFIG)}))
    args = argparse.Namespace(**dict.fromkeys(b.WINDOW_CONFIG))
    assert b.load_evidently_from(path, args)["tasks"] == {}
    args.seed = 1
    with pytest.raises(SystemExit, match="seed was None, this run 1"):
        b.load_evidently_from(path, args)
    path.write_text("not json")
    with pytest.raises(SystemExit, match="expected a monitor.json"):
        b.load_evidently_from(path, args)


@pytest.mark.parametrize("size", [30, 2000])  # few pool rows touched, and most of them
def test_a_windows_sketch_from_row_contributions_is_the_real_sketch_of_its_rows(size) -> None:
    from edgeloop.monitor.drift import validate_sketch
    from edgeloop.monitor.sketch import WindowSketch, build_reference

    bench = _bench()
    rng = np.random.default_rng(0)
    emb = np.maximum(rng.normal(size=(800, 12)) @ rng.normal(size=(12, 12)), 0.0)
    logits = emb[:, :3] * 0.2
    y = logits.argmax(axis=1)
    ref = build_reference(emb[:400], logits[:400], y[:400], embeddings=emb[:400],
                          output_kind="logits", components=4)
    assert ref.projection is not None and ref.projection.whiten is not None
    rows = bench.sketch_rows(ref, emb[400:], logits[400:], emb[400:])
    counts, labelled = bench.draw(rng, np.ones(400), size, 0.1)
    got = validate_sketch(bench.window_sketch(rows, counts, y[400:], labelled), ref)
    real = WindowSketch(ref)
    idx = np.repeat(np.arange(400), counts)
    real.update(emb[400:][idx], logits[400:][idx])
    assert got.n == real.n == size and got.white_n == real.white_n == size
    assert (got.hist == real.hist).all() and (got.pred == real.pred).all()
    assert np.allclose(got.white_sum, real.white_sum) and np.allclose(got.sum_z, real.sum_z)
