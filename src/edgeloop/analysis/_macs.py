"""Multiply-accumulate counts per ONNX operator, from shapes known after shape inference.

Each counter takes the node and a ``shape(name)`` lookup (a tuple of ints, or None when a
shape is unknown or has a symbolic dimension) and returns the MACs of one run of that node, or
None when the shapes it needs are unknown. Bias additions, activations and normalisations are
not counted: MACs measure the multiply-accumulate work that dominates inference cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import onnx
from onnx import helper

__all__ = ["MAC_OPS", "node_macs"]

Shape = tuple[int, ...]
ShapeOf = Callable[[str], Shape | None]
Counter = Callable[[onnx.NodeProto, ShapeOf], int | None]


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _int_attr(node: onnx.NodeProto, name: str, default: int) -> int:
    value = _attr(node, name, default)
    return int(value) if isinstance(value, int) else default


def _input(node: onnx.NodeProto, i: int, shape: ShapeOf) -> Shape | None:
    if i >= len(node.input) or not node.input[i]:
        return None
    return shape(node.input[i])


def _output(node: onnx.NodeProto, shape: ShapeOf) -> Shape | None:
    return shape(node.output[0]) if node.output and node.output[0] else None


def _conv(x_idx: int, w_idx: int) -> Counter:
    """Conv and its quantized forms: N * M * prod(out spatial) * (C / group) * prod(kernel)."""

    def count(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
        w = _input(node, w_idx, shape)
        y = _output(node, shape)
        if w is None or y is None or len(y) < 2:
            return None
        # weight is (M, C/group, k1, k2, ...): every output element takes prod(w[1:]) MACs
        return math.prod(y) * math.prod(w[1:])

    return count


def _conv_transpose(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    """ConvTranspose scatters each input element: N * C * prod(in spatial) * (M/group) * prod(k)."""
    x = _input(node, 0, shape)
    w = _input(node, 1, shape)
    if x is None or w is None or len(x) < 2:
        return None
    return math.prod(x) * math.prod(w[1:])


def _matmul(a_idx: int, b_idx: int) -> Counter:
    """MatMul and its quantized forms: prod(output) * K, with numpy's 1-D promotion rules."""

    def count(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
        a = _input(node, a_idx, shape)
        b = _input(node, b_idx, shape)
        if a is None or b is None or not a or not b:
            return None
        k = a[-1]
        m = a[-2] if len(a) >= 2 else 1
        n = b[-1] if len(b) >= 2 else 1
        batch = _broadcast(a[:-2], b[:-2])
        if batch is None:
            return None
        return math.prod(batch) * m * n * k

    return count


def _broadcast(a: Sequence[int], b: Sequence[int]) -> Shape | None:
    out: list[int] = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            return None
        out.append(max(da, db))
    return tuple(reversed(out))


def _gemm(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    a = _input(node, 0, shape)
    b = _input(node, 1, shape)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m, k = (a[1], a[0]) if _int_attr(node, "transA", 0) else (a[0], a[1])
    n = b[0] if _int_attr(node, "transB", 0) else b[1]
    return m * n * k


def _matmul_nbits(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    """com.microsoft MatMulNBits: A (..., K) times a packed (K, N) weight (K, N: attributes)."""
    a = _input(node, 0, shape)
    k = _int_attr(node, "K", 0)
    n = _int_attr(node, "N", 0)
    if a is None or not a or k <= 0 or n <= 0:
        return None
    return math.prod(a[:-1]) * k * n


def _recurrent(gates: int) -> Counter:
    """RNN (1 gate), GRU (3), LSTM (4): per step and direction, gates*H*(input + H) MACs."""

    def count(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
        x = _input(node, 0, shape)
        w = _input(node, 1, shape)  # (directions, gates*H, input)
        r = _input(node, 2, shape)  # (directions, gates*H, H)
        if x is None or w is None or r is None or len(x) != 3 or len(w) != 3 or len(r) != 3:
            return None
        steps_times_batch = x[0] * x[1]
        return steps_times_batch * w[0] * w[1] * (w[2] + r[2])

    return count


def _einsum(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    """Einsum: the product of the sizes of every index that appears in the inputs."""
    eq = _attr(node, "equation")
    if isinstance(eq, bytes):
        eq = eq.decode()
    if not isinstance(eq, str) or "..." in eq or len(node.input) < 2:
        return None
    terms = eq.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, name in zip(terms, node.input, strict=False):
        s = shape(name)
        if s is None or len(s) != len(term):
            return None
        sizes.update(zip(term, s, strict=True))
    return math.prod(sizes.values())


def _attention(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    """ONNX Attention (opset 23): Q.K^T plus softmax(.).V, on 3-D or 4-D inputs."""
    q = _input(node, 0, shape)
    k = _input(node, 1, shape)
    v = _input(node, 2, shape)
    if q is None or k is None or v is None or len(q) != len(k) or len(q) not in (3, 4):
        return None
    if len(q) == 4:  # (B, heads, seq, head_size)
        b, hq, sq, dh = q
        skv, dv = k[2], v[3]
        return b * hq * sq * skv * (dh + dv)
    b, sq, q_hidden = q
    skv = k[1]
    hq = _int_attr(node, "q_num_heads", 0)
    hkv = _int_attr(node, "kv_num_heads", 0)
    v_hidden = v[2] * (hq // hkv if hq and hkv else 1)
    return b * sq * skv * (q_hidden + v_hidden)


def _ms_attention(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    """com.microsoft Attention: a fused QKV projection, then attention over the sequence."""
    x = _input(node, 0, shape)  # (B, S, input_hidden)
    w = _input(node, 1, shape)  # (input_hidden, 3 * hidden) when Q, K and V share a hidden size
    if x is None or w is None or len(x) != 3 or len(w) != 2:
        return None
    b, s, _ = x
    hidden = w[1] // 3
    return b * s * w[0] * w[1] + 2 * b * s * s * hidden


def _ms_multihead_attention(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    """com.microsoft MultiHeadAttention with separate (B, S, hidden) query, key and value."""
    q = _input(node, 0, shape)
    k = _input(node, 1, shape)
    v = _input(node, 2, shape)
    if q is None or k is None or v is None or len(q) != 3 or len(k) != 3 or len(v) != 3:
        return None
    b, sq, hidden = q
    return b * sq * k[1] * (hidden + v[2])


def _ms_group_query_attention(node: onnx.NodeProto, shape: ShapeOf) -> int | None:
    """com.microsoft GroupQueryAttention: Q.K^T and attention.V over past + new tokens."""
    q = _input(node, 0, shape)
    hq = _int_attr(node, "num_heads", 0)
    hkv = _int_attr(node, "kv_num_heads", 0)
    if q is None or len(q) != 3 or hq <= 0 or hkv <= 0:
        return None
    b, s, width = q
    packed = len(node.input) < 2 or not node.input[1]  # Q, K and V packed in one input
    if packed:
        head, new_kv = width // (hq + 2 * hkv), s
    else:
        k = _input(node, 1, shape)
        if k is None or len(k) != 3:
            return None
        head, new_kv = width // hq, k[1]
    past = _input(node, 3, shape)  # (B, kv_heads, past_len, head) when a KV cache is given
    total = new_kv + (past[2] if past is not None and len(past) == 4 else 0)
    return 2 * b * hq * s * total * head


# (domain, op_type) -> counter; "" is the default ONNX domain
MAC_OPS: dict[tuple[str, str], Counter] = {
    ("", "Conv"): _conv(0, 1),
    ("", "ConvInteger"): _conv(0, 1),
    ("", "QLinearConv"): _conv(0, 3),
    ("com.microsoft", "FusedConv"): _conv(0, 1),
    ("com.microsoft", "NhwcConv"): _conv(0, 1),
    ("com.microsoft", "QLinearConv"): _conv(0, 3),
    ("", "ConvTranspose"): _conv_transpose,
    ("", "MatMul"): _matmul(0, 1),
    ("", "MatMulInteger"): _matmul(0, 1),
    ("", "QLinearMatMul"): _matmul(0, 3),
    ("com.microsoft", "FusedMatMul"): _matmul(0, 1),
    ("com.microsoft", "MatMulIntegerToFloat"): _matmul(0, 1),
    ("", "Gemm"): _gemm,
    ("com.microsoft", "MatMulNBits"): _matmul_nbits,
    ("", "RNN"): _recurrent(1),
    ("", "GRU"): _recurrent(3),
    ("", "LSTM"): _recurrent(4),
    ("", "Einsum"): _einsum,
    ("", "Attention"): _attention,
    ("com.microsoft", "Attention"): _ms_attention,
    ("com.microsoft", "MultiHeadAttention"): _ms_multihead_attention,
    ("com.microsoft", "GroupQueryAttention"): _ms_group_query_attention,
}


def node_macs(node: onnx.NodeProto, shape: ShapeOf) -> tuple[bool, int | None]:
    """``(counts, macs)``: whether the op does MAC work we count, and how much (None: unknown)."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    counter = MAC_OPS.get((domain, node.op_type))
    if counter is None:
        return False, None
    return True, counter(node, shape)
