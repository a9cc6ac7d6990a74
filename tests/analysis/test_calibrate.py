"""The latency model's features and its calibration: features of hand-built graphs whose values
are known by arithmetic, and the NNLS fit on synthetic data with known coefficients (no timing:
the whole-model timing is benchmarks/costmodel.py's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeloop.analysis import LATENCY_FEATURES, calibrate, estimate, fit_latency, latency_features
from edgeloop.analysis._calibrate import with_latency_coefficients
from edgeloop.analysis._estimate import _Rates, latency_prior
from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import InputError
from edgeloop.hardware import load_target

F = TensorProto.FLOAT


def _profile(**kernels: float) -> DeviceProfile:
    return DeviceProfile(
        name="test",
        source="measured",
        arch="aarch64",  # no blocked layout: no layout changes to account for
        cpu_model="test",
        fp32_gops=100.0,
        int8_gops=400.0,
        mem_bandwidth_gbps=10.0,
        power_w=None,
        kernels=dict(kernels) or None,
        extra={"kernel_threads": 1},
    )


def _model() -> onnx.ModelProto:
    """A depthwise conv, a view, a transcendental op and a MatMul."""
    nodes = [
        helper.make_node("Conv", ["x", "D"], ["c"], group=16, pads=[1, 1, 1, 1], name="dw"),
        helper.make_node("Flatten", ["c"], ["f"], name="flat"),
        helper.make_node("Exp", ["f"], ["e"], name="exp"),
        helper.make_node("MatMul", ["e", "W"], ["y"], name="fc"),
    ]
    inits = [
        numpy_helper.from_array(np.full((16, 1, 3, 3), 0.5, np.float32), "D"),
        numpy_helper.from_array(np.full((1024, 10), 0.5, np.float32), "W"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("y", F, [1, 10])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


KERNELS = {
    "fp32_dwconv@64x9x16": 4.0,
    "fp32_gemm@1x1024x10": 20.0,
    "op_overhead_us": 2.0,
    "run_overhead_us": 5.0,
    "elementwise_gbps": 8.0,
}


def test_features_of_each_kernel_follow_from_its_shape_class_macs_and_bytes() -> None:
    f = latency_features(_model(), _profile(**KERNELS))

    assert set(f) == set(LATENCY_FEATURES)
    dw_macs, fc_macs = 64 * 9 * 16, 1024 * 10
    assert f["run"] == 1.0
    assert f["op_mac"] == 2.0  # the depthwise conv and the MatMul
    assert f["op_view"] == 1.0  # Flatten
    assert f["op_other"] == 1.0  # Exp
    assert f["op_int8"] == 0.0
    # each MAC kernel at the measured figure of its own shape class
    assert f["fp32_dwconv_ms"] == pytest.approx(2 * dw_macs / 4e9 * 1e3)
    assert f["fp32_gemm_ms"] == pytest.approx(2 * fc_macs / 20e9 * 1e3)
    assert f["fp32_conv_ms"] == f["fp32_pwconv_ms"] == f["int8_gemm_ms"] == 0.0
    # and its MACs at the profile's peak GEMM rate
    assert f["fp32_peak_ms"] == pytest.approx(2 * (dw_macs + fc_macs) / 100e9 * 1e3)
    # Exp reads and writes 1024 floats, in cache: at the element-wise rate, times the
    # transcendental factor
    assert f["transcendental_ms"] == pytest.approx(4.0 * 8192 / 8e9 * 1e3)
    assert f["move_ms"] == 0.0


def test_int8_screening_moves_the_mac_kernels_to_the_int8_features() -> None:
    f = latency_features(_model(), _profile(**KERNELS), precision="int8")
    assert f["fp32_dwconv_ms"] == f["fp32_gemm_ms"] == f["fp32_peak_ms"] == 0.0
    assert f["int8_dwconv_ms"] > 0 and f["int8_gemm_ms"] > 0
    assert f["op_int8"] == 2.0
    # an int8 convolution's taps: output pixels x kernel area, in millions (the NHWC kernel's
    # indirection and requantization work, which does not scale with its MACs)
    assert f["int8_taps"] == pytest.approx(64 * 9 * 1e-6)
    assert latency_features(_model(), _profile(**KERNELS))["int8_taps"] == 0.0
    with pytest.raises(InputError, match="precision"):
        latency_features(_model(), _profile(**KERNELS), precision="fp16")


def test_the_estimate_is_the_coefficients_times_the_features() -> None:
    plain = _profile(**KERNELS)
    f = latency_features(_model(), plain)
    # uncalibrated: the prior (kernel figures at 1, the measured overheads)
    prior = latency_prior(_Rates(plain))
    assert prior["run"] == pytest.approx(0.005) and prior["op_other"] == pytest.approx(0.002)
    assert prior["op_mac"] == 0.0  # measured kernel figures hold their own overhead
    assert estimate(_model(), plain).latency_ms == pytest.approx(
        sum(prior[n] * f[n] for n in LATENCY_FEATURES)
    )
    coef = {n: 0.5 + i / 10 for i, n in enumerate(LATENCY_FEATURES)}
    calibrated = with_latency_coefficients(plain, coef, models=7)
    e = estimate(_model(), calibrated)
    assert e.latency_ms == pytest.approx(sum(coef[n] * f[n] for n in LATENCY_FEATURES))
    assert e.latency_ms == pytest.approx(coef["run"] + sum(op.latency_ms for op in e.per_op))
    assert any("calibrated on this target (7" in n for n in e.notes)


def test_coefficients_live_in_the_profile_and_survive_its_json(tmp_path: Path) -> None:
    plain = _profile(**KERNELS)
    first = with_latency_coefficients(plain, dict.fromkeys(LATENCY_FEATURES, 2.0), models=3)
    again = with_latency_coefficients(first, dict.fromkeys(LATENCY_FEATURES, 1.0), models=4)
    assert again.kernels is not None
    assert again.kernels["lat:run"] == 1.0 and again.kernels["lat:models"] == 4.0
    assert again.kernels["fp32_dwconv@64x9x16"] == 4.0  # the kernel figures stay
    path = tmp_path / "p.json"
    again.save(path)
    loaded = DeviceProfile.load(path)
    assert estimate(_model(), loaded).latency_ms == pytest.approx(
        estimate(_model(), again).latency_ms
    )
    assert json.loads(path.read_text())["kernels"]["lat:op_mac"] == 1.0


def _synthetic(
    true: dict[str, float], rows: int, seed: int = 0
) -> tuple[list[dict[str, float]], list[float]]:
    rng = np.random.default_rng(seed)
    feats = []
    for _ in range(rows):
        f = {n: float(rng.uniform(0, 3)) for n in LATENCY_FEATURES}
        f["run"] = 1.0
        f["op_mac"], f["op_other"] = float(rng.integers(1, 40)), float(rng.integers(0, 60))
        feats.append(f)
    y = [sum(true[n] * f[n] for n in LATENCY_FEATURES) for f in feats]
    return feats, y


def test_nnls_recovers_known_coefficients_from_exact_data() -> None:
    rng = np.random.default_rng(3)
    true = {n: float(rng.uniform(0.2, 2.0)) for n in LATENCY_FEATURES}
    true["run"], true["op_mac"], true["op_other"] = 0.01, 0.0015, 0.0008
    feats, y = _synthetic(true, rows=60)
    prior = dict.fromkeys(LATENCY_FEATURES, 1.0)
    fit = fit_latency(feats, y, prior, strength=1e-8)
    for n in LATENCY_FEATURES:
        assert fit[n] == pytest.approx(true[n], rel=1e-3, abs=1e-6), n


def test_the_prior_holds_a_coefficient_the_data_say_nothing_about() -> None:
    true = dict.fromkeys(LATENCY_FEATURES, 1.0)
    feats, _ = _synthetic(true, rows=40, seed=1)
    for f in feats:  # no calibration model has a depthwise int8 conv
        f["int8_dwconv_ms"] = 0.0
    y = [sum(f.values()) for f in feats]
    prior = dict.fromkeys(LATENCY_FEATURES, 1.0)
    prior["int8_dwconv_ms"] = 0.37
    fit = fit_latency(feats, y, prior)
    assert fit["int8_dwconv_ms"] == pytest.approx(0.37)
    assert fit["fp32_conv_ms"] == pytest.approx(1.0, rel=0.02)


def test_coefficients_never_go_negative_even_when_least_squares_would() -> None:
    # times that fall with a feature: plain least squares would give it a negative coefficient
    feats = [dict.fromkeys(LATENCY_FEATURES, 0.0) | {"run": 1.0, "move_ms": x} for x in range(8)]
    y = [1.0 - 0.05 * x for x in range(8)]
    fit = fit_latency(feats, y, dict.fromkeys(LATENCY_FEATURES, 0.0), strength=1e-6)
    assert fit["move_ms"] == 0.0 and all(v >= 0 for v in fit.values())
    unconstrained = np.linalg.lstsq(np.array([[1.0, x] for x in range(8)]), y, rcond=None)[0]
    assert unconstrained[1] < 0


def test_bad_fits_are_refused() -> None:
    f = {"run": 1.0}
    prior = dict.fromkeys(LATENCY_FEATURES, 1.0)
    with pytest.raises(InputError, match="measured times"):
        fit_latency([f, f], [1.0], prior)
    with pytest.raises(InputError, match="no calibration"):
        fit_latency([], [], prior)
    with pytest.raises(InputError, match="finite and positive"):
        fit_latency([f], [0.0], prior)
    with pytest.raises(InputError, match="finite and positive"):
        fit_latency([f], [float("nan")], prior)
    with pytest.raises(InputError, match="non-negative"):
        fit_latency([{"run": -1.0}], [1.0], prior)
    with pytest.raises(InputError, match="strength"):
        fit_latency([f], [1.0], prior, strength=0.0)


def test_calibration_needs_a_measured_profile() -> None:
    with pytest.raises(InputError, match="edgeloop profile"):
        calibrate(load_target("rpi4"), [])


def test_the_calibration_set_has_none_of_the_benchmarks_held_out_shapes() -> None:
    # benchmarks/costmodel.py's held-out image models, as (arch, input shape, width)
    held_out = {("cnn", (1, 1, 28, 28), w) for w in (8, 16, 32, 64)} | {("cnn", (1, 3, 64, 64), 32)}
    held_out |= {
        ("mobilenet", (1, 3, r, r), w)
        for w, r in ((0.25, 32), (0.5, 64), (0.75, 96), (1.0, 128), (0.5, 160))
    }
    held_out |= {("mbconv", (1, 3, r, r), w) for w, r in ((0.5, 32), (1.0, 64), (0.75, 96))}
    held_out |= {("cnn1d", (1, 3, 128), w) for w in (16, 64)}
    from edgeloop.zoo._calibration import _CAL_IMAGE

    cal = {(arch, shape, kw["width"]) for _, arch, shape, kw in _CAL_IMAGE}
    assert not cal & held_out


def test_cross_validation_chooses_how_hard_to_pull_toward_the_prior() -> None:
    """Exact data from coefficients far from the prior: leaving groups out, the weakest pull
    predicts them best; with a prior that is right everywhere every pull predicts them all.
    Groups keep a shape's int8 version and sequence lengths together."""
    from edgeloop.analysis._calibrate import PRIOR_STRENGTH, STRENGTHS, _group, choose_strength

    assert _group("cal-transformer-d96-l3-s48-int8") == "cal-transformer-d96-l3"
    assert _group("cal-cnn-w24-28-int8") == _group("cal-cnn-w24-28") == "cal-cnn-w24-28"
    rng = np.random.default_rng(5)
    true = {n: float(rng.uniform(0.2, 2.0)) for n in LATENCY_FEATURES}
    feats, y = _synthetic(true, rows=24, seed=2)
    names = [f"m{i // 2}" + ("-int8" if i % 2 else "") for i in range(24)]
    far = dict.fromkeys(LATENCY_FEATURES, 5.0)
    best, scores = choose_strength(names, feats, y, far)
    assert best == min(STRENGTHS) and set(scores) == set(STRENGTHS)
    assert scores[min(STRENGTHS)] >= scores[max(STRENGTHS)]
    best, scores = choose_strength(names, feats, y, true)
    assert best in STRENGTHS and all(s == 1.0 for s in scores.values())
    two = [n.replace("m", "a" if i < 12 else "b").split("-")[0][:1] for i, n in enumerate(names)]
    assert choose_strength(two, feats, y, far) == (PRIOR_STRENGTH, {})
    with pytest.raises(InputError, match="length"):
        choose_strength(names[:3], feats, y, far)
