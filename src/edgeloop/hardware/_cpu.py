"""What the CPU is: model name, core counts and the ISA features that matter for inference."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

__all__ = [
    "ARM_FEATURES",
    "X86_FEATURES",
    "cpu_model",
    "isa_features",
    "parse_cpuinfo",
]

# /proc/cpuinfo flag -> the name edgeloop reports (x86: AVX2/FMA for fp32 GEMM, F16C for fp16
# conversion, AVX-512, the VNNI int8 dot products, bf16 and the AMX tile units)
X86_FEATURES: dict[str, str] = {
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16",
    "amx_tile": "amx_tile",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
}

# Arm: NEON (asimd on AArch64), int8 dot product, fp16 arithmetic, bf16, int8 matrix multiply, SVE
ARM_FEATURES: dict[str, str] = {
    "neon": "neon",
    "asimd": "asimd",
    "asimddp": "asimddp",
    "fphp": "fphp",
    "asimdhp": "asimdhp",
    "bf16": "bf16",
    "i8mm": "i8mm",
    "sve": "sve",
    "sve2": "sve2",
    "sme": "sme",
}

# Arm "CPU part" numbers (implementer 0x41) -> core name, for boards whose cpuinfo has no model
ARM_PARTS: dict[str, str] = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2",
    "0xd4b": "Cortex-A78C",
    "0xd4f": "Neoverse-V2",
    "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720",
    "0xd82": "Cortex-X4",
}


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per block (processor entries, then any board block)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip().lower()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _sysctl(name: str) -> str:
    try:
        out = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def cpu_model(cpuinfo: str | None = None) -> str:
    """A readable CPU name: x86 "model name", an Arm core from its part number, or the OS's."""
    blocks = parse_cpuinfo(_read("/proc/cpuinfo") if cpuinfo is None else cpuinfo)
    merged: dict[str, str] = {}
    for b in reversed(blocks):
        merged.update(b)
    if merged.get("model name") and "ARMv" not in merged["model name"]:
        return merged["model name"]
    parts = sorted({b["cpu part"] for b in blocks if "cpu part" in b})
    cores = [ARM_PARTS.get(p.lower(), f"Arm part {p}") for p in parts]
    board = merged.get("model") or _read("/sys/firmware/devicetree/base/model").strip("\x00\n ")
    if cores:
        return " + ".join(cores) + (f" ({board})" if board else "")
    if cpuinfo is None and platform.system() == "Darwin":
        name = _sysctl("machdep.cpu.brand_string")
        if name:
            return name
    return platform.processor() or platform.machine() or "unknown"


def isa_features(cpuinfo: str | None = None, machine: str | None = None) -> tuple[str, ...]:
    """Inference-relevant ISA features, sorted; ``neon`` is added on AArch64 (asimd is NEON)."""
    machine = (machine or platform.machine()).lower()
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    flags: set[str] = set()
    for block in parse_cpuinfo(text):
        flags.update(block.get("flags", "").split())
        flags.update(block.get("features", "").split())
    if not flags and cpuinfo is None and platform.system() == "Darwin":
        flags = _darwin_flags()
    table = X86_FEATURES if machine in ("x86_64", "amd64", "i686", "i386") else ARM_FEATURES
    found = {name for flag, name in table.items() if flag in flags}
    if "asimd" in found:
        found.add("neon")
    return tuple(sorted(found))


def _darwin_flags() -> set[str]:
    if platform.machine() == "arm64":  # Apple silicon: every one has NEON, dotprod and fp16
        flags = {"asimd"}
        for key, flag in (
            ("hw.optional.arm.FEAT_DotProd", "asimddp"),
            ("hw.optional.arm.FEAT_FP16", "asimdhp"),
            ("hw.optional.arm.FEAT_BF16", "bf16"),
            ("hw.optional.arm.FEAT_I8MM", "i8mm"),
        ):
            if _sysctl(key) == "1":
                flags.add(flag)
        return flags
    words = (_sysctl("machdep.cpu.features") + " " + _sysctl("machdep.cpu.leaf7_features")).lower()
    return {w.replace(".", "_") for w in words.split()}


def core_counts() -> tuple[int | None, int | None]:
    """(physical, logical) cores this process may run on (CPU affinity and cgroup cpusets count)."""
    import psutil

    logical = psutil.cpu_count(logical=True) or os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        logical = len(os.sched_getaffinity(0)) or logical
    physical = psutil.cpu_count(logical=False) or logical
    if physical and logical:
        physical = min(physical, logical)
    return physical, logical
