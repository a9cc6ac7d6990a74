"""The kernels the cost model needs, timed on ONNX Runtime: what ``DeviceProfile.kernels`` holds.

Each :class:`KernelSpec` is one tiny ONNX model shipped under ``hardware/kernels/`` (built by
``tools/make_kernels.py`` from this table; a test checks the shipped bytes). Weights are
``ConstantOfShape`` nodes, which ONNX Runtime folds into initializers at load time and then
prepacks, as it does a real model's weights, so the files stay a few hundred bytes. The
families and sizes cover what small edge models run: fp32 GEMM from a batch-1 GEMV to a
512-wide GEMM, 3x3 and 1x1 convolutions, depthwise 3x3 convolutions, and their int8 forms
(``QLinearMatMul``, ``QLinearConv``: what QDQ models run as).

Each kernel ships twice, alone and as a chain of three (its shapes are square, so the output
of one feeds the next): ONNX Runtime wraps a lone kernel in layout changes (NCHWc reorders on
x86, NHWC transposes for int8 convolutions) and a ``Run()``, and the difference of the two
timings, halved, is one kernel's time without them, as it runs inside a model.

``measure_kernels`` times each pair (best of runs) and returns
the flat dict the profile stores: ``"FAMILY@MxKxN" -> GOPS`` (2 operations per MAC; M, K, N
as :attr:`KernelSpec.gemm_dims` says), plus
``op_overhead_us`` and ``elementwise_gbps`` (chains of 1 and 17 ``Add`` of a broadcast bias at
2048 and 65536 floats: time per Add = fixed + elements x per-element, the fixed part being what
any operator costs beyond its bytes, and 12 bytes an element at the per-element rate),
``run_overhead_us`` (one ``Run()`` of a one-``Relu`` model, less a Relu) and ``runtime_bytes``
(resident memory one session of a tiny model adds, measured in a fresh process).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

__all__ = [
    "CHAIN_DEPTHS",
    "KERNEL_SPECS",
    "ADD_DEPTHS",
    "ADD_SIZES",
    "KernelSpec",
    "measure_kernels",
    "runtime_bytes",
]


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: ``family`` (fp32_gemm ...), and its sizes.

    GEMM families: ``dims = (M, K, N)``, input ``A`` of shape (M, K), a constant (K, N) weight.
    Conv families: ``dims = (C_in, C_out, H, kernel, group)``, input ``X`` of shape
    (1, C_in, H, H) (1-D for the ``*_generic`` families: (1, C_in, H)), same padding, stride 1.
    """

    family: str
    dims: tuple[int, ...]

    @property
    def is_conv(self) -> bool:
        return "conv" in self.family

    @property
    def int8(self) -> bool:
        return self.family.startswith("int8")

    @property
    def rank(self) -> int:
        """Spatial dimensions: the ``*_generic`` families are 1-D convolutions, which run on
        ONNX Runtime's generic (im2col + GEMM) path on every CPU; the others are 2-D."""
        return 1 if self.family.endswith("_generic") else 2

    @property
    def gemm_dims(self) -> tuple[int, int, int]:
        """(M, K, N) as the cost model indexes kernels: a convolution as the GEMM it runs as
        (output pixels, input channels x kernel area, output channels); a depthwise one as
        (output pixels, kernel area, channels)."""
        if not self.is_conv:
            m, k, n = self.dims
            return m, k, n
        c_in, c_out, h, k, group = self.dims
        pixels, area = math.prod([h] * self.rank), math.prod([k] * self.rank)
        if group > 1 and group == c_in:
            return pixels, area, c_out
        return pixels, c_in // group * area, c_out // group

    @property
    def key(self) -> str:
        """The profile's key for this kernel: ``family@MxKxN``."""
        return f"{self.family}@{'x'.join(map(str, self.gemm_dims))}"

    @property
    def alone(self) -> bool:
        """A stem (few input channels, more output ones) cannot chain with itself: it is timed
        alone, less the ``Run()`` overhead, its layout changes included as a model's first
        convolution has them too."""
        return self.is_conv and self.dims[0] < self.dims[1] and self.dims[3] != 1

    @property
    def depths(self) -> tuple[int, ...]:
        """The chain lengths shipped and timed for this kernel."""
        return CHAIN_DEPTHS[:1] if self.alone else CHAIN_DEPTHS

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the timing stands for: a 1x1 convolution that changes channels is timed
        alternating with its reverse (the chain must close), so both shapes get its figure."""
        if not self.is_conv or self.dims[0] == self.dims[1] or self.dims[3] != 1:
            return (self.key,)
        m, k, n = self.gemm_dims
        return (self.key, f"{self.family}@{m}x{n}x{k}")

    @property
    def macs(self) -> int:
        if self.is_conv:
            c_in, c_out, h, k, group = self.dims
            return c_out * math.prod([h * k] * self.rank) * (c_in // group)
        m, k, n = self.dims
        return m * k * n

    def file(self, depth: int) -> str:
        """The model of ``depth`` of these kernels in a chain (their shapes are square)."""
        return f"{self.family}_{'x'.join(map(str, self.dims))}_d{depth}.onnx"

    @property
    def input_name(self) -> str:
        return "X" if self.is_conv else "A"

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.is_conv:
            c_in, _, h, _, _ = self.dims
            return (1, c_in, *([h] * self.rank))
        return (self.dims[0], self.dims[1])


_GEMMS = (
    (1, 64, 64),
    (1, 256, 256),
    (1, 1024, 1024),
    (32, 128, 128),
    (128, 64, 64),
    (64, 256, 256),
)
_CONVS = ((8, 16), (16, 32), (32, 32), (64, 16), (128, 8))  # (channels, H)
_POINTWISE = ((32, 32), (64, 16), (128, 8), (256, 8), (512, 4))
_DEPTHWISE = ((16, 16), (32, 32), (64, 32), (128, 16), (256, 4), (512, 2))
_SMALL_POINTWISE = ((16, 32), (24, 16))  # int8 1x1 with few channels (a searched net's)
# 1x1 convolutions that expand or project channels, as inverted residuals do: (c_in, c_out, H)
_EXPAND = ((16, 64, 16), (8, 48, 32), (24, 96, 8), (40, 160, 4))
# stems: a 3x3 convolution of the image's 1 or 3 channels, (c_in, c_out, H)
_STEMS = ((1, 16, 28), (3, 16, 32), (3, 32, 64))
# channel counts off the NCHWc block (8/16) and 1-D: the generic path, (channels, length)
_GENERIC = ((12, 256), (20, 128), (40, 64), (72, 32), (120, 16))

KERNEL_SPECS: tuple[KernelSpec, ...] = (
    *(KernelSpec("fp32_gemm", d) for d in (*_GEMMS, (256, 512, 512))),
    *(KernelSpec("fp32_conv", (c, c, h, 3, 1)) for c, h in _CONVS),
    *(KernelSpec("fp32_conv", (ci, co, h, 3, 1)) for ci, co, h in _STEMS),
    *(KernelSpec("fp32_conv1x1", (c, c, h, 1, 1)) for c, h in _POINTWISE),
    *(KernelSpec("fp32_conv1x1", (ci, co, h, 1, 1)) for ci, co, h in _EXPAND),
    *(KernelSpec("fp32_dwconv", (c, c, h, 3, c)) for c, h in _DEPTHWISE),
    *(KernelSpec("fp32_conv_generic", (c, c, n, 3, 1)) for c, n in _GENERIC),
    *(KernelSpec("fp32_dwconv_generic", (c, c, n, 3, c)) for c, n in _GENERIC),
    *(KernelSpec("int8_gemm", d) for d in (*_GEMMS, (256, 512, 512))),
    *(KernelSpec("int8_conv", (c, c, h, 3, 1)) for c, h in _CONVS),
    *(KernelSpec("int8_conv", (ci, co, h, 3, 1)) for ci, co, h in _STEMS),
    *(KernelSpec("int8_conv1x1", (c, c, h, 1, 1)) for c, h in _POINTWISE),
    *(KernelSpec("int8_conv1x1", (c, c, h, 1, 1)) for c, h in _SMALL_POINTWISE),
    *(KernelSpec("int8_conv1x1", (ci, co, h, 1, 1)) for ci, co, h in _EXPAND),
    *(KernelSpec("int8_dwconv", (c, c, h, 3, c)) for c, h in _DEPTHWISE),
    *(KernelSpec("int8_conv_generic", (c, c, n, 3, 1)) for c, n in _GENERIC),
    *(KernelSpec("int8_dwconv_generic", (c, c, n, 3, c)) for c, n in _GENERIC),
)

CHAIN_DEPTHS = (1, 3)

# element-wise kernels: a chain of broadcast Adds over X (1, n/64, 64), at two sizes and depths
ADD_SIZES = (2048, 65536)
ADD_DEPTHS = (1, 17)


def _best_seconds(fn: Callable[[], object], seconds: float, min_runs: int = 5) -> float:
    fn()
    fn()  # warm-up: first-run allocation and packing
    best = math.inf
    runs = 0
    start = time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def _feed(shape: tuple[int, ...], int8: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    if int8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.standard_normal(shape, dtype=np.float32)


_RSS_CHILD = """
import sys, numpy as np, psutil
from edgeloop.runtime import Session
data = sys.stdin.buffer.read()
threads = int(sys.argv[1]) or None
proc = psutil.Process()
x = {"X": np.ones((1, 16), np.float32)}
before = proc.memory_info().rss
session = Session(data, threads=threads, providers=["CPUExecutionProvider"])
for _ in range(5):
    session.run_unchecked(x)
print(proc.memory_info().rss - before)
"""


def runtime_bytes(threads: int | None = None) -> int | None:
    """Resident memory one ONNX Runtime session of a one-node model adds, in a fresh process
    (the process's own allocations would hide it here); None if the child cannot run."""
    import subprocess
    import sys

    from edgeloop.hardware._measure import kernel_bytes

    try:
        done = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(threads or 0)],
            input=kernel_bytes("relu_chain_1.onnx"),
            capture_output=True,
            timeout=60,
            check=False,
        )
        return max(0, int(done.stdout.decode().strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def measure_kernels(
    *,
    threads: int | None = None,
    seconds: float = 0.1,
    on_kernel: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Time every kernel of :data:`KERNEL_SPECS` on ``threads`` intra-op threads (see the
    module docstring for the keys). ``seconds`` is the time spent on each kernel."""
    from edgeloop.hardware._measure import kernel_bytes
    from edgeloop.runtime import Session

    def session(name: str) -> Session:
        return Session(kernel_bytes(name), threads=threads, providers=["CPUExecutionProvider"])

    out: dict[str, float] = {}
    runtime = runtime_bytes(threads)
    if runtime is not None:
        out["runtime_bytes"] = float(runtime)
    one = session("relu_chain_1.onnx")
    x16 = {"X": _feed((1, 16), False)}
    t1 = _best_seconds(lambda: one.run_unchecked(x16), seconds)
    chain = session("relu_chain_64.onnx")
    t64 = _best_seconds(lambda: chain.run_unchecked(x16), seconds)
    relu_s = max(0.0, (t64 - t1) / 63)
    run_s = max(0.0, t1 - relu_s)
    out["run_overhead_us"] = round(run_s * 1e6, 3)
    per_op: list[float] = []  # seconds per Add at each size
    for n in ADD_SIZES:
        xa = {"X": _feed((1, n // 64, 64), False)}
        t = [
            _best_seconds(partial(session(f"add_{n}_d{d}.onnx").run_unchecked, xa), seconds)
            for d in ADD_DEPTHS
        ]
        per_op.append(max(0.0, (t[1] - t[0]) / (ADD_DEPTHS[1] - ADD_DEPTHS[0])))
    # t(n) = fixed + n * per_element: the fixed part is what any operator costs beyond its bytes
    per_element = max((per_op[1] - per_op[0]) / (ADD_SIZES[1] - ADD_SIZES[0]), 1e-12)
    fixed = max(per_op[0] - per_element * ADD_SIZES[0], relu_s)
    out["op_overhead_us"] = round(fixed * 1e6, 3)
    out["elementwise_gbps"] = round(12 / per_element / 1e9, 3)  # read 4 + 4 (bias), write 4
    for spec in KERNEL_SPECS:
        if on_kernel is not None:
            on_kernel(spec.file(1))
        feeds = {spec.input_name: _feed(spec.input_shape, spec.int8)}
        times: list[float] = []
        for depth in spec.depths:
            sess = session(spec.file(depth))
            times.append(_best_seconds(partial(sess.run_unchecked, feeds), seconds))
        if spec.alone:
            each = times[0] - run_s
        else:
            each = (times[1] - times[0]) / (CHAIN_DEPTHS[1] - CHAIN_DEPTHS[0])
        each = max(each, times[0] * 0.2)  # timing noise on a busy machine: never below a fifth
        for key in spec.keys:
            out[key] = round(2.0 * spec.macs / each / 1e9, 3)
    return out
