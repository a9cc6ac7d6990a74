"""``edgeloop profile`` and ``edgeloop targets`` through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from edgeloop.analysis import LATENCY_FEATURES
from edgeloop.artifacts import DeviceProfile

Cli = Callable[..., CompletedProcess[str]]


def test_profile_json_and_save(cli: Cli, tmp_path: Path) -> None:
    r = cli("profile", "--quick", "--json", "--save", "me.json")
    assert r.returncode == 0, r.stderr
    printed = DeviceProfile.from_dict(json.loads(r.stdout))
    saved = DeviceProfile.load(tmp_path / "me.json")
    assert printed == saved
    assert saved.source == "measured" and saved.fp32_gops and saved.int8_gops


def test_profile_table(cli: Cli) -> None:
    r = cli("profile", "--quick")
    assert r.returncode == 0, r.stderr
    for text in ("fp32 throughput", "int8 throughput", "memory bandwidth", "power", "GOPS"):
        assert text in r.stdout


def test_targets_lists_the_builtin_profiles(cli: Cli) -> None:
    r = cli("targets", "--json")
    assert r.returncode == 0, r.stderr
    names = {DeviceProfile.from_dict(d).name for d in json.loads(r.stdout)}
    assert {"rpi4", "rpi5", "jetson-orin-nano-cpu", "cortex-a78-phone", "intel-n100"} <= names
    table = cli("targets")
    assert "rpi5" in table.stdout and "Cortex-A76" in table.stdout


def test_one_target_in_full_with_its_sources(cli: Cli) -> None:
    r = cli("targets", "raspberry-pi-5")
    assert r.returncode == 0, r.stderr
    assert "references" in r.stdout and "raspberrypi.com" in r.stdout and "DERIVED" in r.stdout


def test_unknown_target_fails_with_the_list(cli: Cli) -> None:
    r = cli("targets", "pi9")
    assert r.returncode == 13
    assert "unknown target 'pi9'; built-in targets:" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_profile_calibrate_stores_latency_coefficients_the_estimate_uses(
    cli: Cli, tmp_path: Path
) -> None:
    r = cli("profile", "--quick", "--calibrate", "--save", "me.json")
    assert r.returncode == 0, r.stderr
    assert "latency model" in r.stdout and "calibrated on" in r.stdout
    saved = DeviceProfile.load(tmp_path / "me.json")
    kernels = saved.kernels or {}
    assert kernels["lat:models"] >= 10
    assert all(kernels[f"lat:{n}"] >= 0 for n in LATENCY_FEATURES)
    r = cli("estimate", str(_tiny_model(tmp_path)), "--target", "me.json", "--json")
    assert r.returncode == 0, r.stderr
    assert any("calibrated on this target" in n for n in json.loads(r.stdout)["notes"])


def _tiny_model(tmp_path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((16, 4), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(m, path)
    return path
