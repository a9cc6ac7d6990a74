"""benchmark(): synthesized inputs, figures from the graph, interleaved comparison, metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeloop.artifacts import TensorSpec
from edgeloop.errors import InputError, ModelInputError
from edgeloop.runtime import benchmark, parse_shape_overrides, synthesize_inputs


def test_synthesized_inputs_follow_the_specs() -> None:
    specs = [
        TensorSpec("x", "float32", ("batch", 3, None)),
        TensorSpec("ids", "int64", ("batch", "seq")),
    ]
    feeds = synthesize_inputs(specs, batch=4, overrides={"ids": (4, 16)})
    assert feeds["x"].shape == (4, 3, 32) and feeds["x"].dtype == np.float32
    assert feeds["ids"].shape == (4, 16) and feeds["ids"].dtype == np.int64
    assert feeds["ids"].min() >= 0
    with pytest.raises(ModelInputError, match="--shape names unknown input 'mask'"):
        synthesize_inputs(specs, overrides={"mask": (1,)})


def test_shape_overrides_parse_and_refuse_garbage() -> None:
    assert parse_shape_overrides(["ids=1,64", "x=1x3x8x8"]) == {"ids": (1, 64), "x": (1, 3, 8, 8)}
    with pytest.raises(InputError, match="--shape 'ids=a,b'"):
        parse_shape_overrides(["ids=a,b"])


def test_benchmark_in_a_child_process(two_input_model: Path) -> None:
    graph_stats = pytest.importorskip("edgeloop.analysis").graph_stats
    r = benchmark(
        two_input_model, iterations=20, warmup=2, batch=3, threads=1, graph_stats=graph_stats
    )
    assert r.iterations == 20
    assert r.input_shapes == {"x": [3, 8], "ids": [3, 32]}  # dynamic seq: 32
    assert r.params == 8 * 2 + 5 * 2 + 1
    assert r.macs == 8 * 2
    assert r.size_bytes == two_input_model.stat().st_size
    lat = r.latency_ms
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r.throughput_per_s == pytest.approx(3 * 1000 / lat["p50"])
    assert r.peak_rss_mb is not None and r.peak_rss_mb > 10
    assert r.to_dict()["compare"] is None


def test_compare_interleaves_and_gives_ratios(
    identity_classifier: Path, two_input_model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(identity_classifier.read_bytes())
    x = np.eye(3, dtype=np.float32)
    y = np.arange(3)
    graph_stats = pytest.importorskip("edgeloop.analysis").graph_stats
    r = benchmark(
        identity_classifier,
        compare=copy,
        data=(x, y),
        iterations=15,
        warmup=1,
        graph_stats=graph_stats,
    )
    assert r.compare is not None
    assert r.iterations == r.compare.iterations == 15
    assert r.ratios["size"] == 1.0 and r.ratios["macs"] == 1.0
    assert r.metrics["accuracy"] == 1.0 and r.compare.metrics["accuracy"] == 1.0
    assert r.compare.model_rss_mb is not None


def test_in_process_benchmark_reports_no_rss(identity_classifier: Path) -> None:
    r = benchmark(identity_classifier, iterations=5, isolate=False)
    assert r.peak_rss_mb is None and r.iterations == 5


def test_data_missing_an_input_is_refused_before_timing(two_input_model: Path) -> None:
    bad = {"x": np.zeros((1, 8), np.float32)}
    with pytest.raises(ModelInputError, match="missing input 'ids'"):
        benchmark(two_input_model, data=bad, iterations=1)


def test_memory_is_the_models_own(
    identity_classifier: Path, tmp_path: Path, save_model: Callable[..., Path]
) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((1024, 2048), np.float32), "W")  # 8 MiB
    big = save_model(
        tmp_path / "big.onnx",
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2048])],
        [weights],
    )
    ballast = np.ones(64 * 2**20, np.uint8)  # the caller's memory must not count
    r = benchmark(big, compare=identity_classifier, iterations=3, warmup=1)
    assert ballast.sum() > 0
    assert r.model_rss_mb is not None and r.compare and r.compare.model_rss_mb is not None
    assert r.model_rss_mb >= 7.5
    assert r.compare.model_rss_mb < r.model_rss_mb
    assert r.peak_rss_mb is not None and r.peak_rss_mb < 1000


def test_a_slow_model_is_timed_at_least_three_times_not_ten(
    identity_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from edgeloop.runtime import Session

    real = Session.run_unchecked

    def slow(self: Session, feeds: dict[str, np.ndarray], outputs: None = None) -> object:
        time.sleep(0.05)
        return real(self, feeds, outputs)

    monkeypatch.setattr(Session, "run_unchecked", slow)
    r = benchmark(identity_classifier, min_seconds=0.02, warmup=50, isolate=False)
    assert r.iterations == 3
    assert r.latency_ms["min"] >= 50


def test_benchmark_without_a_graph_reader_counts_no_params(identity_classifier: Path) -> None:
    r = benchmark(identity_classifier, iterations=2, warmup=0, isolate=False)

    assert r.params is None and r.macs is None
    assert r.size_bytes == identity_classifier.stat().st_size
