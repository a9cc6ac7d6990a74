"""What the demo says beyond its figures: per-ISA variants, and what to do once it has run."""

from __future__ import annotations

import shlex
from pathlib import Path

from edgeloop.artifacts import DeviceProfile
from edgeloop.demo import NEXT_PORT, DemoStep, next_steps, render_next, variant_report
from edgeloop.hardware import load_target
from edgeloop.protocol import Variant


def _variant(name: str, isa: list[str] | None = None) -> Variant:
    return Variant(name, f"t/{name}.elb", "0" * 64, 1, {"isa": isa} if isa else {})


VARIANTS = [
    _variant("fp32"),
    _variant("int8-avx512vnni", ["avx512_vnni"]),
    _variant("int8-avxvnni", ["avx_vnni"]),
    _variant("int8-armdot", ["asimddp"]),
]


def _device(target: str, variant: str) -> dict[str, object]:
    profile = load_target(target).to_dict()
    return {"labels": {"target": target}, "profile": profile, "installed": {"variant": variant}}


def _host(isa: tuple[str, ...]) -> DeviceProfile:
    return DeviceProfile("this", "measured", "x86_64", "Some CPU", isa=isa)


def test_variant_report_names_each_targets_isa_and_what_this_host_would_get() -> None:
    devices = [_device("rpi4", "fp32"), _device("rpi5", "int8-armdot")]
    devices.append(_device("rpi5", "int8-armdot"))

    text, figures = variant_report(devices, _host(("avx2", "avx512_vnni")), VARIANTS)

    assert figures["targets"] == {
        "rpi4": {"isa": [], "devices": 1, "variants": {"fp32": 1}},
        "rpi5": {"isa": ["asimddp"], "devices": 2, "variants": {"int8-armdot": 2}},
    }
    assert figures["this_host"] == {
        "cpu": "Some CPU",
        "isa": ["avx512_vnni"],
        "variant": "int8-avx512vnni",
    }
    assert "not this host's CPU" in text
    assert "rpi4 (no 8-bit dot product) -> fp32 x1" in text
    assert "rpi5 (asimddp) -> int8-armdot x2" in text
    assert text.endswith("this host (avx512_vnni) would get int8-avx512vnni")


def test_a_host_without_dot_product_gets_fp32() -> None:
    _, figures = variant_report([], _host(("avx2", "fma")), VARIANTS)

    assert figures["this_host"]["variant"] == "fp32"
    assert figures["this_host"]["isa"] == []


def test_next_steps_serve_the_demo_data_again_and_name_the_token(tmp_path: Path) -> None:
    data = tmp_path / "fleet"
    steps = [DemoStep("rollback", "", 1.0, {"id": 7})]

    nxt = next_steps(tmp_path, data, f"sqlite:///{data / 'edgeloop.db'}", steps)
    lines = render_next(nxt)

    assert nxt["server"][:2] == ["edgeloop", "server"]
    assert nxt["server"][-2:] == ["--port", str(NEXT_PORT)]
    assert nxt["dashboard"] == f"http://127.0.0.1:{NEXT_PORT}/dashboard"
    assert nxt["admin_token"] == str(data / "admin-token")
    assert ["edgeloop", "rollout", "--server", f"http://127.0.0.1:{NEXT_PORT}", "--data",
            str(data), "status", "7"] in nxt["commands"]  # fmt: skip
    assert lines[1].strip() == shlex.join(nxt["server"])
    assert f"sign in with the admin token in {data / 'admin-token'}" in lines[2]
    assert lines[-len(nxt["commands"]) :] == [f"  {shlex.join(c)}" for c in nxt["commands"]]
