"""``estimate``: latency, peak memory and energy of an ONNX model on a :class:`DeviceProfile`.

The graph side is :func:`edgeloop.analysis._plan.execution_plan` (the kernels ONNX Runtime would
run, with their MACs, bytes and precision); this module prices each kernel with the profile:

- a MAC kernel (conv, 1x1 conv, depthwise conv, GEMM, recurrent) takes the longer of its
  compute time, ``2 * MACs / GOPS`` at the throughput the profile measured for that kernel
  family and precision at the nearest shapes (``kernels["fp32_conv@MxKxN"]``: the GEMM it runs
  as, weighted by inverse square distance in log2 M, K, N), and the time to stream the bytes
  that do not fit in cache at the memory bandwidth;
- any other kernel moves its bytes at the element-wise rate while they fit in cache and at the
  memory bandwidth beyond (transcendental ops cost ``TRANSCENDENTAL_FACTOR`` times more per
  byte, views only their overhead);
- every kernel pays the per-operator overhead, and the run the ``Run()`` overhead once.

That is the prior. Each kernel's price is a sum over named features (:data:`LATENCY_FEATURES`,
see :func:`op_features`): the time of its shape class and precision from the kernel figures,
its MACs at the profile's peak GEMM rate, bytes moved, and a count for the per-operator
overheads by kind, plus a per-inference overhead. The coefficients are 1 for the times and the
measured overheads for the counts unless the profile holds its own (``kernels["lat:NAME"]``):
``edgeloop profile --calibrate`` fits them on this target against whole models' median times
(:func:`edgeloop.analysis.calibrate`).

Peak memory is what a session keeps of the weights the kernels read (their stored size times a
residency factor: copies and prepacking), the activation arena (a liveness pass over the steps
in order, times the arena's growth factor) and the runtime's own footprint (the profile's
one-node session plus a fixed per-session share); the factors are calibrated, see below.
Energy is the profile's power figure times the latency, and None where the profile has no
power figure.

A profile from ``edgeloop profile`` measures the kernel figures; an older profile or a built-in
target falls back on its fp32/int8 GOPS and bandwidth with the fractions below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from edgeloop.analysis._plan import ExecutionPlan, Step, activation_peak, execution_plan
from edgeloop.artifacts import DeviceProfile
from edgeloop.errors import InputError

__all__ = [
    "KERNEL_FAMILIES",
    "LATENCY_FEATURES",
    "CostEstimate",
    "OpCost",
    "estimate",
    "latency_features",
]

KERNEL_FAMILIES = (
    "fp32_gemm",
    "fp32_conv",
    "fp32_conv1x1",
    "fp32_dwconv",
    "fp32_conv_generic",
    "fp32_dwconv_generic",
    "int8_gemm",
    "int8_conv",
    "int8_conv1x1",
    "int8_dwconv",
    "int8_conv_generic",
    "int8_dwconv_generic",
)
PRECISIONS = ("fp32", "int8")

# Fallbacks for a profile without measured kernels. Built-in targets quote derived peaks; a
# measured profile's fp32/int8 GOPS come from a 512-cubed GEMM. Small kernels reach a part of
# that: the fraction grows with log MACs from SMALL_FRACTION at 1e4 MACs to 1 at 1e8.
BUILTIN_EFFICIENCY = 0.4  # as edgeloop.hardware.BUILTIN_EFFICIENCY
SMALL_FRACTION = 0.1
FAMILY_FRACTION = {  # of the GEMM figure of the same precision
    "fp32_gemm": 1.0,
    "fp32_conv": 0.8,
    "fp32_conv1x1": 0.8,
    "fp32_dwconv": 0.1,  # depthwise: few MACs per byte, no GEMM packing
    "fp32_conv_generic": 0.5,  # im2col + GEMM
    "fp32_dwconv_generic": 0.03,  # im2col per group
    "int8_gemm": 1.0,
    "int8_conv": 0.7,
    "int8_conv1x1": 0.7,
    "int8_dwconv": 0.05,
    "int8_conv_generic": 0.3,
    "int8_dwconv_generic": 0.03,
}
DEFAULT_OP_OVERHEAD_US = 3.0
DEFAULT_RUN_OVERHEAD_US = 10.0
DEFAULT_RUNTIME_BYTES = 8 * 2**20  # ONNX Runtime's session, thread pool and arena bookkeeping
# bytes a kernel moves through the cache (a 2 MiB last-level share, as small edge cores have):
# at the measured element-wise rate (else ELEMENTWISE_CACHE_FACTOR x bandwidth); beyond it at
# the memory bandwidth
CACHE_BYTES = 2 * 2**20
ELEMENTWISE_CACHE_FACTOR = 2.0
TRANSCENDENTAL_FACTOR = 4.0

# Resident memory of a session beyond the bytes the graph names, calibrated on ONNX Runtime
# 1.32 (CPU provider, default arena) by `benchmarks/costmodel.py --calibrate`: a least-squares
# fit on its calibration models (CNN, MobileNetV1, MBConv, autoencoder and transformer shapes,
# fp32 and int8, none of them among the models the benchmark checks). Convolution weights stay
# resident about 3.7 times (the initializer, its prepacked NCHWc or NHWC copy, the parsed
# proto's), Gemm weights 1.8 times and other MAC kernels' (MatMul) 2 times (prepacking), tables
# a Gather reads once; the activation arena grows to about 1.3 times the liveness peak (the BFC
# arena's chunks), plus about 1.5 MiB per session over the one-node session the profile
# measures (kernels, the allocation planner's tables).
CONV_WEIGHT_RESIDENCY = 3.7
GEMM_WEIGHT_RESIDENCY = 1.8
WEIGHT_RESIDENCY = 2.0
ARENA_FACTOR = 1.3
SESSION_BYTES = int(1.5 * 2**20)


@dataclass(frozen=True)
class OpCost:
    """One kernel's share: the node (and the nodes fused into it), its work and its time."""

    name: str
    op_type: str  # "Conv+Relu" for a fused kernel
    macs: int
    bytes: int  # activations read and written plus weights read
    latency_ms: float
    kind: str  # conv, pwconv, dwconv, gemm, recurrent, pool, elementwise, transcendental, ...
    precision: str  # fp32 or int8
    fused: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op_type": self.op_type,
            "macs": self.macs,
            "bytes": self.bytes,
            "latency_ms": self.latency_ms,
            "kind": self.kind,
            "precision": self.precision,
            "fused": list(self.fused),
        }


@dataclass(frozen=True)
class CostEstimate:
    """A prediction for one inference (batch 1, or the shapes given) on one target.

    ``peak_memory_bytes`` = ``resident_weight_bytes`` + ``activation_bytes`` (the arena) +
    ``runtime_bytes``; ``weight_bytes`` is what the weights take as stored (int8 weights at one
    byte), ``resident_weight_bytes`` what a session keeps of them (copies and prepacking).
    ``energy_mj`` is None when the profile has no power figure ("unknown"). ``threads`` is the
    thread count the profile's kernel figures were measured with (None: a built-in target's
    all-core peak). ``notes`` say what the estimate assumed or could not see.
    """

    target: str
    precision: str
    latency_ms: float
    peak_memory_bytes: int
    weight_bytes: int
    resident_weight_bytes: int
    activation_bytes: int
    runtime_bytes: int
    energy_mj: float | None
    macs: int
    macs_complete: bool
    per_op: tuple[OpCost, ...]
    threads: int | None = None
    kernel_source: str = "measured"  # "measured" kernels, or "derived" from the GOPS figures
    assumed_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "precision": self.precision,
            "latency_ms": self.latency_ms,
            "peak_memory_bytes": self.peak_memory_bytes,
            "weight_bytes": self.weight_bytes,
            "resident_weight_bytes": self.resident_weight_bytes,
            "activation_bytes": self.activation_bytes,
            "runtime_bytes": self.runtime_bytes,
            "energy_mj": self.energy_mj,
            "macs": self.macs,
            "macs_complete": self.macs_complete,
            "threads": self.threads,
            "kernel_source": self.kernel_source,
            "assumed_shapes": {k: list(v) for k, v in self.assumed_shapes.items()},
            "notes": list(self.notes),
            "per_op": [op.to_dict() for op in self.per_op],
        }


# The latency model's features (:func:`op_features`): "run" (1 per inference), operator counts
# (op_mac: MAC kernels, op_other: data movement, op_view: views, op_int8: int8 kernels of any
# kind, on top of the others), each MAC kernel's time from the kernel figures by precision and
# shape class (dense conv, 1x1 conv, depthwise conv, GEMM), its MACs at the profile's peak GEMM
# rate (large kernels beat the small measured shapes), and the time to move the bytes of the
# other kernels (transcendental ones apart).
LATENCY_FEATURES = (
    "run",
    "op_mac",
    "op_other",
    "op_view",
    "op_int8",
    "fp32_conv_ms",
    "fp32_pwconv_ms",
    "fp32_dwconv_ms",
    "fp32_gemm_ms",
    "int8_conv_ms",
    "int8_pwconv_ms",
    "int8_dwconv_ms",
    "int8_gemm_ms",
    "fp32_peak_ms",
    "int8_peak_ms",
    "int8_taps",
    "move_ms",
    "transcendental_ms",
)
LATENCY_KEY = "lat:"  # the profile's calibrated coefficients: kernels["lat:FEATURE"]
_SHAPE_CLASS = {
    "conv": "conv",
    "conv_generic": "conv",
    "conv1x1": "pwconv",
    "dwconv": "dwconv",
    "dwconv_generic": "dwconv",
    "gemm": "gemm",
}

Point = tuple[float, float, float]


def _points(kernels: Mapping[str, float], family: str) -> list[tuple[Point, float]]:
    """((log2 M, log2 K, log2 N), log GOPS) of every ``family@MxKxN`` the profile measured."""
    out = []
    for key, value in kernels.items():
        fam, sep, dims = key.partition("@")
        if fam != family or not sep:
            continue
        try:
            m, k, n = (float(d) for d in dims.split("x"))
        except ValueError:
            continue
        if min(m, k, n) <= 0 or not isinstance(value, int | float):
            continue
        if not math.isfinite(value) or value <= 0:
            continue
        out.append(((math.log2(m), math.log2(k), math.log2(n)), math.log(value)))
    return out


def _lookup(points: Sequence[tuple[Point, float]], at: Point) -> float:
    """GOPS at ``at``: inverse-square-distance weighting of the measured points in log2 space
    (the nearest sizes count most; an exact size returns its measurement)."""
    num = den = 0.0
    for p, log_gops in points:
        d2 = sum((a - b) ** 2 for a, b in zip(p, at, strict=True))
        if d2 < 1e-9:
            return math.exp(log_gops)
        w = 1.0 / d2
        num += w * log_gops
        den += w
    return math.exp(num / den)


def _at(dims: tuple[int, int, int] | None, macs: int) -> Point:
    if dims is None:  # not a GEMM-shaped kernel (recurrent, control): a cube of its MACs
        side = math.log2(max(macs, 1)) / 3
        return side, side, side
    m, k, n = dims
    return math.log2(max(m, 1)), math.log2(max(k, 1)), math.log2(max(n, 1))


class _Rates:
    """The profile's figures as the per-kernel rates the estimate needs."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        k = profile.kernels or {}
        self.kernels = k
        self.curves = {f: _points(k, f) for f in KERNEL_FAMILIES}
        self.measured = any(self.curves.values())
        eff = 1.0 if profile.source == "measured" else BUILTIN_EFFICIENCY
        self.peak = {
            "fp32": (profile.fp32_gops or 0.0) * eff,
            "int8": (profile.int8_gops or profile.fp32_gops or 0.0) * eff,
        }
        self.bandwidth = float(profile.mem_bandwidth_gbps or k.get("elementwise_gbps") or 1.0)
        self.elementwise = float(
            k.get("elementwise_gbps") or self.bandwidth * ELEMENTWISE_CACHE_FACTOR
        )
        self.op_overhead_ms = float(k.get("op_overhead_us", DEFAULT_OP_OVERHEAD_US)) / 1e3
        self.run_overhead_ms = float(k.get("run_overhead_us", DEFAULT_RUN_OVERHEAD_US)) / 1e3
        self.runtime_bytes = int(k.get("runtime_bytes", DEFAULT_RUNTIME_BYTES))
        self.block = nchwc_block(profile)
        self.prior = latency_prior(self)
        self.coef = dict(self.prior)
        for name in LATENCY_FEATURES:
            value = k.get(LATENCY_KEY + name)
            if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
                self.coef[name] = float(value)
        self.calibrated = any(LATENCY_KEY + n in k for n in LATENCY_FEATURES)

    def price(self, features: Mapping[str, float]) -> float:
        """Milliseconds: the features weighted by the coefficients."""
        return sum(self.coef[n] * v for n, v in features.items())

    def gops(self, family: str, macs: int, dims: tuple[int, int, int] | None = None) -> float:
        curve = self.curves.get(family)
        if curve:
            return _lookup(curve, _at(dims, macs))
        precision = family.split("_")[0]
        same_gemm = self.curves.get(f"{precision}_gemm")
        if same_gemm:  # measured GEMM, a family not measured: a fraction of it
            return _lookup(same_gemm, _at(dims, macs)) * FAMILY_FRACTION[family]
        peak = self.peak[precision]
        if peak <= 0:
            raise InputError(
                f"target {self.profile.name!r} has no {precision} throughput figure "
                "(fp32_gops/int8_gops or measured kernels)"
            )
        x = math.log10(max(macs, 1))
        ramp = min(1.0, max(0.0, (x - 4.0) / 4.0))
        fraction = SMALL_FRACTION + (1.0 - SMALL_FRACTION) * ramp
        return peak * fraction * FAMILY_FRACTION[family]

    def move_ms(self, nbytes: int) -> float:
        """Time to move ``nbytes``: the first ``CACHE_BYTES`` at the cache-resident
        (element-wise) rate, the rest at the memory bandwidth."""
        cached = min(nbytes, CACHE_BYTES)
        return (cached / self.elementwise + (nbytes - cached) / self.bandwidth) / 1e9 * 1e3

    def stream_ms(self, nbytes: int) -> float:
        """A MAC kernel's floor: the bytes that cannot stay in cache, at the bandwidth (the
        measured kernels already include their cache-resident traffic)."""
        return max(0, nbytes - CACHE_BYTES) / (self.bandwidth * 1e9) * 1e3


def latency_prior(rates: _Rates) -> dict[str, float]:
    """The uncalibrated coefficients: each kernel at its measured (or derived) figure, the
    measured per-operator overhead for every kernel that is not a measured MAC kernel (those
    figures hold their own), the measured ``Run()`` overhead once, nothing for the rest."""
    prior = dict.fromkeys(LATENCY_FEATURES, 0.0)
    prior["run"] = rates.run_overhead_ms
    prior["op_mac"] = 0.0 if rates.measured else rates.op_overhead_ms
    prior["op_other"] = prior["op_view"] = rates.op_overhead_ms
    for name in LATENCY_FEATURES:
        if name.endswith("_ms") and "_peak" not in name:
            prior[name] = 1.0
    return prior


def nchwc_block(profile: DeviceProfile) -> int:
    """ONNX Runtime's NCHWc block on this target: 16 floats with AVX-512, 8 with AVX2, and 0
    (no blocked layout) elsewhere: Arm and older x86 run every convolution on the generic path,
    which is what their 2-D kernel figures measure."""
    if profile.arch.lower() not in ("x86_64", "amd64"):
        return 0
    if "avx512f" in profile.isa:
        return 16
    return 8 if "avx2" in profile.isa else 0


def _generic(step: Step, block: int) -> bool:
    """Whether a float convolution runs on ONNX Runtime's generic path (im2col + GEMM): every
    1-D one, and on an x86 target with the blocked layout a 2-D one the NCHWc transformer
    leaves in NCHW. As ONNX Runtime's ``nchwc_transformer`` decides: a grouped convolution
    needs its output channels on the block and, unless depthwise, its input channels and each
    group's output channels too; an ungrouped one takes any output channel count (padded to
    the block, :func:`_padding`) and input channels on the block or fewer than the block (it
    reads those in NCHW: a stem, or a layer after a narrow one)."""
    if step.conv is None:
        return False
    c_in, c_out, group, rank = step.conv
    if rank != 2:
        return True
    if not block:
        return False
    if group > 1:
        if c_out % block:
            return True
        if group == c_in == c_out:  # depthwise
            return False
        return bool(c_in % block or (c_out // group) % block)
    return c_in >= block and c_in % block != 0


def _blocked(step: Step, block: int) -> bool:
    """A float 2-D convolution ONNX Runtime runs in the blocked (NCHWc) layout."""
    if not block or step.precision != "fp32" or step.kind not in ("conv", "pwconv", "dwconv"):
        return False
    return step.conv is not None and not _generic(step, block)


def _padding(step: Step, block: int) -> float:
    """The factor a blocked convolution's work grows by: its output channels padded up to the
    block (an 8-channel layer computes 16 on AVX-512)."""
    if step.conv is None or not _blocked(step, block):
        return 1.0
    c_out = step.conv[1]
    return -(-c_out // block) * block / c_out if c_out > 0 else 1.0


def _family(step: Step, block: int = 0) -> str | None:
    if step.kind in ("conv", "pwconv", "dwconv") and step.precision == "fp32":
        if _generic(step, block):
            return {"conv": "fp32_conv_generic", "pwconv": "fp32_gemm"}.get(
                step.kind, "fp32_dwconv_generic"
            )
        return {"conv": "fp32_conv", "pwconv": "fp32_conv1x1"}.get(step.kind, "fp32_dwconv")
    one_d = step.conv is not None and step.conv[3] != 2  # int8 1-D: its own kernels
    if step.kind == "dwconv":
        return "int8_dwconv_generic" if one_d else "int8_dwconv"
    if step.kind in ("conv", "pwconv"):
        if one_d and step.kind == "conv":
            return "int8_conv_generic"
        return f"{step.precision}_{'conv1x1' if step.kind == 'pwconv' else 'conv'}"
    if step.kind in ("gemm", "recurrent", "control"):
        return f"{step.precision}_gemm"
    return None


def op_features(step: Step, rates: _Rates) -> dict[str, float]:
    """One kernel's latency features (:data:`LATENCY_FEATURES`, those it has): its operator
    count by kind and, for a MAC kernel, the longer of its compute time at the measured figure
    of its family and precision and the time to stream what does not fit in cache, filed under
    its shape class, and its MACs at the peak GEMM rate; for another kernel, the time to move
    its bytes."""
    feats: dict[str, float] = {}
    if step.precision == "int8":
        feats["op_int8"] = 1.0
    if step.kind == "view":
        feats["op_view"] = 1.0
        return feats
    family = _family(step, rates.block)
    if family is not None and step.macs > 0:
        precision, _, fam = family.partition("_")
        macs = step.macs * _padding(step, rates.block)
        compute = 2.0 * macs / (rates.gops(family, step.macs, step.dims) * 1e9) * 1e3
        feats["op_mac"] = 1.0
        feats[f"{precision}_{_SHAPE_CLASS[fam]}_ms"] = max(compute, rates.stream_ms(step.bytes))
        if precision == "int8" and step.conv is not None and step.dims is not None:
            c_in, _, group, _ = step.conv
            area = step.dims[1] / max(c_in // max(group, 1), 1)
            feats["int8_taps"] = step.dims[0] * area * 1e-6
        peak = rates.peak[precision]
        if peak > 0:
            feats[f"{precision}_peak_ms"] = 2.0 * step.macs / (peak * 1e9) * 1e3
        return feats
    feats["op_other"] = 1.0
    if step.kind == "transcendental":
        feats["transcendental_ms"] = rates.move_ms(step.bytes) * TRANSCENDENTAL_FACTOR
    else:
        feats["move_ms"] = rates.move_ms(step.bytes)
    return feats


def _step_ms(step: Step, rates: _Rates) -> float:
    return rates.price(op_features(step, rates))


# element-wise ops ONNX Runtime's NCHWc transformer keeps in the blocked layout
_NCHWC_OPS = ("Add", "Sum", "Relu", "Clip", "Sigmoid", "Concat", "BatchNormalization", "Resize")


def weight_split(steps: Sequence[Step], weight_bytes: int) -> tuple[float, float, float, float]:
    """``weight_bytes`` shared out as (convolution, Gemm, other MAC kernels', the rest: tables
    such as embeddings that ``Gather`` reads) in proportion to what the kernels of each kind
    read: a session keeps them resident differently (prepacked copies for MAC kernels)."""
    total = sum(s.weight_bytes for s in steps) or 1
    conv = sum(s.weight_bytes for s in steps if s.kind in ("conv", "pwconv", "dwconv"))
    gemm = sum(s.weight_bytes for s in steps if s.op_type.split("+")[0] == "Gemm")
    mac = sum(s.weight_bytes for s in steps if s.kind in ("gemm", "recurrent", "control"))
    other = mac - gemm
    rest = total - conv - mac
    return tuple(weight_bytes * part / total for part in (conv, gemm, other, rest))  # type: ignore[return-value]


def _reorders(steps: Sequence[Step], plan: ExecutionPlan, rates: _Rates) -> tuple[OpCost, ...]:
    """The layout changes ONNX Runtime inserts around its blocked (NCHWc) region on x86: a
    ``ReorderOutput`` where a tensor of the region is read by an op outside it or leaves the
    graph, a ``ReorderInput`` where a blocked convolution reads a tensor from outside it (not
    for an input with fewer channels than the block, which the first convolution reads as is).
    Each copies its tensor once."""
    if not rates.block:
        return ()
    blocked: set[str] = set()  # tensors in the blocked layout
    padded: set[str] = set()  # ... whose channels are off the block (padded up to it)
    inside: list[bool] = []
    for st in steps:
        conv_blocked = _blocked(st, rates.block)
        follows = st.kind == "pool" or st.op_type.split("+")[0] in _NCHWC_OPS
        ins = [n for n in st.inputs if n in plan.tensor_bytes]
        ok = bool(ins) and all(n in blocked and n not in padded for n in ins)
        here = conv_blocked or (follows and ok)
        inside.append(here)
        if here:
            blocked.update(st.outputs)
            if conv_blocked and st.conv is not None and st.conv[1] % rates.block:
                padded.update(st.outputs)
    out: list[OpCost] = []
    outputs = set(plan.graph_outputs)

    def reorder(kind: str, tensor: str) -> None:
        nbytes = 2 * plan.tensor_bytes.get(tensor, 0)
        out.append(
            OpCost(
                name=f"{kind}:{tensor}",
                op_type=kind,
                macs=0,
                bytes=nbytes,
                latency_ms=rates.price(reorder_features(nbytes, rates)),
                kind="layout",
                precision="fp32",
            )
        )

    seen: set[str] = set()
    for st, here in zip(steps, inside, strict=True):
        for n in st.inputs:
            if n not in plan.tensor_bytes or n in seen:
                continue
            nchw_reader = here and st.conv is not None and st.conv[0] < rates.block
            if n in blocked and (not here or nchw_reader):  # a stem-like conv reads NCHW
                seen.add(n)
                reorder("ReorderOutput", n)
            elif here and n not in blocked and st.conv is not None and st.conv[0] >= rates.block:
                seen.add(n)
                reorder("ReorderInput", n)
    for n in blocked & outputs - seen:
        reorder("ReorderOutput", n)
    return tuple(out)


def _nhwc_transposes(
    steps: Sequence[Step], plan: ExecutionPlan, rates: _Rates
) -> tuple[OpCost, ...]:
    """The ``Transpose`` nodes ONNX Runtime's NHWC transformer inserts around its int8
    region: it runs a quantized 2-D convolution (``QLinearConv``) channels-last, with the pools
    and element-wise kernels between such convolutions (``NhwcMaxPool``,
    ``QLinearGlobalAveragePool``), and transposes a tensor where the region reads it from
    outside or where a kernel outside it (or the caller) reads it. Each copies its tensor."""
    region: set[str] = set()  # tensors in the NHWC layout
    inside: list[bool] = []
    for st in steps:
        conv = (
            st.precision == "int8"
            and st.kind in ("conv", "pwconv", "dwconv")
            and st.conv is not None
            and st.conv[3] == 2
        )
        follows = st.kind in ("pool", "elementwise") and st.precision == "int8"
        ins = [n for n in st.inputs if n in plan.tensor_bytes]
        here = conv or (follows and bool(ins) and all(n in region for n in ins))
        inside.append(here)
        if here:
            region.update(st.outputs)
    out: list[OpCost] = []
    seen: set[str] = set()

    def transpose(tensor: str) -> None:
        seen.add(tensor)
        nbytes = 2 * plan.tensor_bytes.get(tensor, 0)
        out.append(
            OpCost(
                name=f"Transpose:{tensor}",
                op_type="Transpose",
                macs=0,
                bytes=nbytes,
                latency_ms=rates.price(reorder_features(nbytes, rates)),
                kind="layout",
                precision="int8",
            )
        )

    for st, here in zip(steps, inside, strict=True):
        for n in st.inputs:
            if n not in plan.tensor_bytes or n in seen:
                continue
            if (n in region) != here:
                transpose(n)
    for n in region & set(plan.graph_outputs) - seen:
        transpose(n)
    return tuple(out)


def reorder_features(nbytes: int, rates: _Rates) -> dict[str, float]:
    """A layout change's features: one data-movement operator copying ``nbytes``."""
    return {"op_other": 1.0, "move_ms": rates.move_ms(nbytes)}


def _as_int8(step: Step) -> Step:
    """The step as static int8 quantization would run it: int8 weights and MAC arithmetic (its
    GEMM shape and convolution channels kept)."""
    if _family(step) is None or step.precision == "int8" or step.macs == 0:
        return step
    return replace(
        step,
        precision="int8",
        weight_bytes=step.weight_bytes // 4,
        input_bytes=step.input_bytes // 4,
        output_bytes=step.output_bytes // 4,
    )


def estimate(
    model: str | Path | bytes | onnx.ModelProto,
    profile: DeviceProfile,
    *,
    precision: str | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> CostEstimate:
    """Predict latency, peak memory and energy of one inference of ``model`` on ``profile``.

    ``precision`` None takes the model as it is (int8 where it is quantized); ``"int8"`` prices
    a float model as if its Conv/MatMul/Gemm kernels were statically quantized (int8 weights,
    activations and arithmetic), to screen quantization before running it; ``"fp32"`` on a
    quantized model is refused. ``input_shapes`` pins dynamic input dimensions (dynamic batch
    dimensions are 1). Raises :class:`InputError` for a bad precision or a profile with no
    throughput figure, :class:`ModelFormatError` for a file that is not ONNX.
    """
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    plan = execution_plan(model, input_shapes=input_shapes)
    rates = _Rates(profile)
    steps = plan.steps
    quantized = [s for s in steps if s.precision == "int8"]
    if precision == "fp32" and quantized:
        raise InputError(
            f"precision 'fp32': the model is quantized ({len(quantized)} int8 kernels); "
            "estimate its float source instead"
        )
    weight_bytes = plan.weight_bytes
    if precision == "int8":
        converted = [_as_int8(s) for s in steps]
        weight_bytes -= sum(
            a.weight_bytes - b.weight_bytes for a, b in zip(steps, converted, strict=True)
        )
        steps = converted
    used = precision or ("int8" if quantized else "fp32")
    per_op = tuple(
        OpCost(
            name=s.name,
            op_type=s.op_type,
            macs=s.macs,
            bytes=s.bytes,
            latency_ms=_step_ms(s, rates),
            kind=s.kind,
            precision=s.precision,
            fused=tuple(s.fused),
        )
        for s in steps
    )
    per_op += _reorders(steps, plan, rates) + _nhwc_transposes(steps, plan, rates)
    latency = rates.coef["run"] + sum(op.latency_ms for op in per_op)
    activations = activation_peak(plan)
    if precision == "int8":
        activations = _int8_activation_peak(plan, steps)
    conv_weights, gemm_weights, other_weights, tables = weight_split(steps, weight_bytes)
    resident = (
        CONV_WEIGHT_RESIDENCY * conv_weights
        + GEMM_WEIGHT_RESIDENCY * gemm_weights
        + WEIGHT_RESIDENCY * other_weights
        + tables  # read in place: no prepacked copy
    )
    arena = ARENA_FACTOR * activations
    runtime = rates.runtime_bytes + SESSION_BYTES
    peak = resident + arena + runtime
    energy = None if profile.power_w is None else profile.power_w * latency  # W x ms = mJ
    notes: list[str] = []
    if plan.unknown_shapes:
        shown = ", ".join(plan.unknown_shapes[:5])
        more = f" and {len(plan.unknown_shapes) - 5} more" if len(plan.unknown_shapes) > 5 else ""
        notes.append(
            f"shapes unknown for {shown}{more}: their bytes are not counted (pin the inputs "
            "with input_shapes)"
        )
    unknown_macs = [s.name for s in steps if not s.macs_known]
    if unknown_macs:
        notes.append(
            f"MACs unknown for {len(unknown_macs)} kernel(s): {', '.join(unknown_macs[:5])}"
        )
    if not rates.measured:
        notes.append(
            "no measured kernel figures in this profile: throughput derived from its "
            f"{'peak ' if profile.source != 'measured' else ''}GOPS (run `edgeloop profile` "
            "on the device for measured ones)"
        )
    if rates.calibrated:
        n = int(profile.kernels.get(LATENCY_KEY + "models", 0)) if profile.kernels else 0
        notes.append(
            f"latency coefficients calibrated on this target ({n} whole models' median times)"
        )
    if energy is None:
        notes.append("energy unknown: the profile has no power figure")
    threads = profile.extra.get("kernel_threads") if profile.source == "measured" else None
    return CostEstimate(
        target=profile.name,
        precision=used,
        latency_ms=latency,
        peak_memory_bytes=int(peak),
        weight_bytes=int(weight_bytes),
        resident_weight_bytes=int(resident),
        activation_bytes=int(arena),
        runtime_bytes=int(runtime),
        energy_mj=energy,
        macs=sum(s.macs for s in steps),
        macs_complete=not unknown_macs,
        per_op=per_op,
        threads=threads if isinstance(threads, int) else None,
        kernel_source="measured" if rates.measured else "derived",
        assumed_shapes=plan.assumed_shapes,
        notes=tuple(notes),
    )


def _int8_activation_peak(plan: ExecutionPlan, steps: Sequence[Step]) -> int:
    """The arena with the tensors int8 MAC kernels write at one byte an element."""
    sizes = dict(plan.tensor_bytes)
    for s in steps:
        if s.precision == "int8" and s.macs:
            for o in s.outputs:
                if o in sizes and o not in plan.graph_outputs:
                    sizes[o] = sizes[o] // 4
    return activation_peak(replace(plan, tensor_bytes=sizes))


def latency_features(
    model: str | Path | bytes | onnx.ModelProto,
    profile: DeviceProfile,
    *,
    precision: str | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, float]:
    """The model's latency features on ``profile``: every kernel's :func:`op_features` (the
    layout changes' too) summed, and ``run`` 1. :func:`estimate`'s latency is their dot
    product with the profile's coefficients; a calibration fits the coefficients on them.
    Arguments as :func:`estimate`'s (the precision is not checked against the model here)."""
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    plan = execution_plan(model, input_shapes=input_shapes)
    rates = _Rates(profile)
    steps = [_as_int8(s) for s in plan.steps] if precision == "int8" else plan.steps
    total = dict.fromkeys(LATENCY_FEATURES, 0.0)
    total["run"] = 1.0
    parts = [op_features(s, rates) for s in steps]
    layout = _reorders(steps, plan, rates) + _nhwc_transposes(steps, plan, rates)
    parts += [reorder_features(op.bytes, rates) for op in layout]
    for feats in parts:
        for name, value in feats.items():
            total[name] += value
    return total
