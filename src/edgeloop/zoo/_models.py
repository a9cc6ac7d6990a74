"""Reference architectures, small enough to train on a laptop CPU in seconds to minutes."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["CNN", "CNN1d", "DenseAutoencoder", "MBConvNet", "MobileNet", "TokenTransformer"]


def _bn_relu(conv: nn.Module, channels: int, dims: int = 2) -> nn.Sequential:
    bn = nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    return nn.Sequential(conv, bn, nn.ReLU(inplace=True))


class CNN(nn.Module):
    """A small CNN: three 3x3 conv blocks, global average pooling, a linear classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _bn_relu(nn.Conv2d(in_channels, w, 3, padding=1, bias=False), w),
            _bn_relu(nn.Conv2d(w, w, 3, padding=1, bias=False), w),
            nn.MaxPool2d(2),
            _bn_relu(nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), 2 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


def _dw_separable(c_in: int, c_out: int, stride: int, dims: int = 2, k: int = 3) -> nn.Sequential:
    """A depthwise conv then a pointwise (1x1) conv, each with batch norm and ReLU."""
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    return nn.Sequential(
        _bn_relu(conv(c_in, c_in, k, stride, k // 2, groups=c_in, bias=False), c_in, dims),
        _bn_relu(conv(c_in, c_out, 1, bias=False), c_out, dims),
    )


# MobileNetV1 (Howard et al., 2017), table 1: (output channels, stride) of each separable block
MOBILENET_V1_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


class MobileNet(nn.Module):
    """MobileNetV1: a strided 3x3 stem and 13 depthwise-separable blocks, scaled by ``width``.

    At ``input_size=224`` this is MobileNetV1's shape (about 569 M MACs at width 1). Inputs
    smaller than 128 pixels get a stride-1 stem so that 32x32 images keep a 2x2 final map.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
        input_size: int = 224,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(round(c * width / 8)) * 8)

        stem_stride = 2 if input_size >= 128 else 1
        layers: list[nn.Module] = [
            _bn_relu(nn.Conv2d(in_channels, ch(32), 3, stem_stride, 1, bias=False), ch(32))
        ]
        c = ch(32)
        for out, stride in MOBILENET_V1_BLOCKS:
            layers.append(_dw_separable(c, ch(out), stride))
            c = ch(out)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


class _InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, k x k depthwise, 1x1 linear projection; a residual
    connection when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, k: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_bn_relu(nn.Conv2d(c_in, hidden, 1, bias=False), hidden))
        layers += [
            _bn_relu(
                nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False), hidden
            ),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x)
        return x + out if self.residual else out


# (output channels, stride of the stage's first block) of MBConvNet's four stages
MBCONV_STAGES = ((16, 1), (24, 2), (40, 2), (80, 2))


class MBConvNet(nn.Module):
    """A searchable MobileNetV2-style network (the space ``edgeloop search mobilenet`` explores).

    A 3x3 stem, then four stages of ``depth`` inverted-residual blocks (``expansion`` times
    wider inside, ``kernel`` x ``kernel`` depthwise convs), channels scaled by ``width``.
    ``resolution`` resizes the input (bilinear) before the stem, so a smaller resolution costs
    fewer MACs on the same data; None keeps ``input_size``. Inputs under 64 pixels get a
    stride-1 stem.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
        depth: int = 2,
        kernel: int = 3,
        expansion: int = 4,
        input_size: int = 32,
        resolution: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if depth < 1 or kernel < 1 or kernel % 2 == 0 or expansion < 1 or width <= 0:
            raise ValueError(
                f"need depth >= 1, an odd kernel, expansion >= 1 and width > 0; got depth={depth}, "
                f"kernel={kernel}, expansion={expansion}, width={width}"
            )
        if resolution is not None and not 4 <= resolution <= 4 * input_size:
            raise ValueError(f"resolution must be in [4, {4 * input_size}], got {resolution}")
        self.resolution = None if resolution in (None, input_size) else int(resolution)
        size = self.resolution or input_size

        def ch(c: float) -> int:
            return max(8, int(round(c * width / 8)) * 8)

        stem = ch(16)
        layers: list[nn.Module] = [
            _bn_relu(nn.Conv2d(in_channels, stem, 3, 2 if size >= 64 else 1, 1, bias=False), stem)
        ]
        c = stem
        for out, stride in MBCONV_STAGES:
            for i in range(depth):
                layers.append(
                    _InvertedResidual(c, ch(out), stride if i == 0 else 1, expansion, kernel)
                )
                c = ch(out)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resolution is not None:
            x = nn.functional.interpolate(
                x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False
            )
        out: torch.Tensor = self.classifier(self.features(x))
        return out


class CNN1d(nn.Module):
    """A depthwise-separable 1-D CNN (DS-CNN) for multichannel time series."""

    def __init__(self, in_channels: int = 3, num_classes: int = 7, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _bn_relu(nn.Conv1d(in_channels, w, 7, 2, 3, bias=False), w, dims=1),
            _dw_separable(w, w, 1, dims=1, k=5),
            _dw_separable(w, 2 * w, 2, dims=1, k=5),
            _dw_separable(2 * w, 2 * w, 1, dims=1, k=5),
            _dw_separable(2 * w, 4 * w, 2, dims=1, k=5),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


class _EncoderLayer(nn.Module):
    """Pre-norm self-attention and feed-forward, written with plain Linear and matmul so the
    ONNX graph holds MatMul/Gemm nodes that ONNX Runtime's dynamic quantizer can use."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Linear(ff, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(b, n, 3, self.heads, self.head_dim).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (b, heads, n, hd)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim)) + bias
        att = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, n, d)
        h = h + self.drop(self.proj(att))
        out: torch.Tensor = h + self.drop(self.ff(self.norm2(h)))
        return out


class TokenTransformer(nn.Module):
    """A small transformer encoder over token ids and an attention mask -> class logits.

    Learned token and position embeddings, ``layers`` pre-norm encoder layers, and a masked
    mean over the tokens before the classifier.
    """

    def __init__(
        self,
        vocab_size: int = 1000,
        num_classes: int = 8,
        max_len: int = 64,
        dim: int = 64,
        heads: int = 4,
        layers: int = 2,
        ff: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.tok.weight, std=0.02)  # token and position on the same scale
        nn.init.normal_(self.pos, std=0.02)
        self.layers = nn.ModuleList(_EncoderLayer(dim, heads, ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        h = self.tok(input_ids) + self.pos[:, :n]
        mask = attention_mask.to(h.dtype)
        bias = (1.0 - mask)[:, None, None, :] * -1e4  # padded keys get no attention
        for layer in self.layers:
            h = layer(h, bias)
        h = self.norm(h)
        pooled = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        out: torch.Tensor = self.head(pooled)
        return out


class DenseAutoencoder(nn.Module):
    """A dense autoencoder; its output is the reconstruction of its input."""

    def __init__(self, in_features: int = 32, hidden: int = 64, latent: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, latent), nn.ReLU()
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, in_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out
