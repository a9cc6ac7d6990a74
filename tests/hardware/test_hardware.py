"""Device profiling: cpuinfo parsing, kernels, measurements, RAPL, targets and the cost model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import InputError, UnknownNameError
from edgeloop.hardware import (
    KERNEL_SPECS,
    KernelSpec,
    RaplMeter,
    cpu_model,
    estimate_latency_ms,
    gemm_gops,
    isa_features,
    list_targets,
    load_target,
    measure_kernels,
    memory_bandwidth_gbps,
    profile_device,
)
from edgeloop.hardware._kernels import CHAIN_DEPTHS, runtime_bytes
from edgeloop.hardware._measure import kernel_bytes

ROOT = Path(__file__).resolve().parents[2]

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""

PI5_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp"
)
PI5_CPUINFO = f"""processor\t: 0
BogoMIPS\t: 108.00
Features\t: {PI5_FEATURES}
CPU implementer\t: 0x41
CPU part\t: 0xd0b

processor\t: 1
Features\t: {PI5_FEATURES}
CPU implementer\t: 0x41
CPU part\t: 0xd0b

Revision\t: d04170
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def test_x86_cpuinfo_gives_model_and_inference_features() -> None:
    assert cpu_model(X86_CPUINFO) == "Intel(R) Xeon(R) Platinum 8480+"
    assert isa_features(X86_CPUINFO, "x86_64") == (
        "amx_bf16",
        "amx_int8",
        "amx_tile",
        "avx2",
        "avx512_bf16",
        "avx512_vnni",
        "avx512f",
        "f16c",
        "fma",
    )


def test_arm_cpuinfo_names_the_core_from_its_part_number_and_board() -> None:
    assert cpu_model(PI5_CPUINFO) == "Cortex-A76 (Raspberry Pi 5 Model B Rev 1.0)"
    assert isa_features(PI5_CPUINFO, "aarch64") == ("asimd", "asimddp", "asimdhp", "fphp", "neon")


def test_kernels_match_the_generator() -> None:
    if importlib.util.find_spec("onnx") is None:
        pytest.skip("regenerating kernels needs onnx (pip install edgeloop[train])")
    spec = importlib.util.spec_from_file_location(
        "make_kernels", ROOT / "tools" / "make_kernels.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.build_kernels()
    assert {"matmul_fp32.onnx", "matmul_int8.onnx", "relu_chain_64.onnx"} <= set(built)
    assert {spec.file(d) for spec in KERNEL_SPECS for d in spec.depths} <= set(built)
    assert any(spec.alone for spec in KERNEL_SPECS)
    assert all(spec.depths == CHAIN_DEPTHS for spec in KERNEL_SPECS if not spec.alone)
    for name, data in built.items():
        assert kernel_bytes(name) == data, f"{name} is stale: run python tools/make_kernels.py"


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_gemm_throughput_is_measured(dtype: str) -> None:
    gops = gemm_gops(dtype, size=128, threads=1, seconds=0.05)
    assert 0.05 < gops < 1e5


def test_memory_bandwidth_is_plausible() -> None:
    assert 0.1 < memory_bandwidth_gbps(mib=8, seconds=0.05) < 10_000


def test_rapl_energy_reads_files_and_handles_wraparound(tmp_path: Path) -> None:
    pkg = tmp_path / "intel-rapl:0"
    sub = tmp_path / "intel-rapl:0:0"
    for d in (pkg, sub):
        d.mkdir()
        (d / "max_energy_range_uj").write_text("1000000\n")
    (pkg / "energy_uj").write_text("900000\n")
    (sub / "energy_uj").write_text("5\n")
    meter = RaplMeter(tmp_path)
    assert len(meter.zones) == 1  # the core sub-zone is inside the package
    meter.start()
    (pkg / "energy_uj").write_text("100000\n")  # wrapped past 1 J
    joules, seconds = meter.stop()  # type: ignore[misc]
    assert joules == pytest.approx(0.2)
    assert seconds >= 0


def test_rapl_is_unavailable_without_powercap(tmp_path: Path) -> None:
    meter = RaplMeter(tmp_path / "absent")
    meter.start()
    assert not meter.available and meter.stop() is None


def test_quick_profile_measures_this_machine(tmp_path: Path) -> None:
    p = profile_device(quick=True)
    assert p.source == "measured"
    assert p.cores_logical and p.cores_logical >= 1
    assert p.fp32_gops and p.fp32_gops > 0
    assert p.int8_gops and p.int8_gops > 0
    assert p.mem_bandwidth_gbps and p.mem_bandwidth_gbps > 0
    assert p.memory_total_mb and p.memory_total_mb >= (p.memory_available_mb or 0)
    assert (p.power_w is None) == (p.power_source == "unknown")
    assert "CPUExecutionProvider" in p.providers
    assert DeviceProfile.load(p.save(tmp_path / "p.json")) == p
    assert p.kernels is not None
    assert {spec.key for spec in KERNEL_SPECS} <= set(p.kernels)
    assert {"op_overhead_us", "run_overhead_us", "elementwise_gbps"} <= set(p.kernels)


def test_kernel_figures_are_positive_and_keyed_by_the_gemm_they_run_as() -> None:
    kernels = measure_kernels(threads=1, seconds=0.0)
    for spec in KERNEL_SPECS:
        assert kernels[spec.key] > 0, spec
        m, k, n = spec.gemm_dims
        assert m * k * n == spec.macs, spec
    assert kernels["op_overhead_us"] >= 0 and kernels["run_overhead_us"] >= 0
    assert kernels["elementwise_gbps"] > 0
    assert KernelSpec("fp32_dwconv", (32, 32, 8, 3, 32)).gemm_dims == (64, 9, 32)
    assert KernelSpec("fp32_conv", (16, 32, 8, 3, 1)).gemm_dims == (64, 144, 32)
    assert KernelSpec("fp32_conv", (16, 32, 8, 3, 1)).macs == 64 * 144 * 32


def test_runtime_bytes_come_from_a_fresh_process() -> None:
    used = runtime_bytes(threads=1)
    assert used is not None and 0 <= used < 2**30


def test_builtin_targets_name_sources_and_say_what_is_derived() -> None:
    names = list_targets()
    assert {"rpi4", "rpi5", "jetson-orin-nano-cpu", "cortex-a78-phone", "intel-n100"} <= set(names)
    for name in names:
        t = load_target(name)
        assert t.source == "builtin" and t.name == name
        assert t.references, name
        assert t.cores_physical and t.isa and t.cpu_model
        if t.fp32_gops or t.int8_gops:
            assert "DERIVED" in t.notes, name


def test_targets_load_by_alias_and_by_path(tmp_path: Path) -> None:
    assert load_target("Raspberry-Pi-4").name == "rpi4"
    data = load_target("rpi5").to_dict()
    data["name"] = "my-board"
    path = tmp_path / "board.json"
    path.write_text(json.dumps(data))
    assert load_target(path).name == "my-board"


def test_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown target 'pi9'; built-in targets: .*rpi4"):
        load_target("pi9")


def test_latency_estimate_scales_with_macs_and_dtype() -> None:
    pi5 = load_target("rpi5")
    fp32 = estimate_latency_ms(10**9, pi5, "fp32")
    assert fp32 == pytest.approx(2e9 / (153.6e9 * 0.4) * 1e3)
    assert estimate_latency_ms(10**9, pi5, "int8") == pytest.approx(fp32 / 4)
    # a big model on slow memory is bandwidth-bound
    assert estimate_latency_ms(1, pi5, "fp32", weight_bytes=17_100_000) == pytest.approx(1.0)
    with pytest.raises(InputError, match="dtype 'int3'"):
        estimate_latency_ms(1, pi5, "int3")
