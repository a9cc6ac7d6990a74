"""The architecture catalogue: names, builders, default datasets and training settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from edgeloop.data import Dataset
from edgeloop.errors import DataError, InputError, UnknownNameError
from edgeloop.zoo._models import (
    CNN,
    CNN1d,
    DenseAutoencoder,
    MBConvNet,
    MobileNet,
    TokenTransformer,
)

__all__ = ["ARCHITECTURES", "ArchInfo", "build_model", "kwargs_for", "list_architectures"]


@dataclass(frozen=True)
class ArchInfo:
    name: str
    builder: Callable[..., nn.Module]
    default_dataset: str
    task: str
    description: str
    # training defaults: epochs, lr, batch_size
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 64
    defaults: dict[str, Any] = field(default_factory=dict)  # builder kwargs on its dataset


def _image_kwargs(ds: Dataset) -> dict[str, Any]:
    shape = ds.shapes()[ds.input_names[0]]
    if len(shape) != 3:
        raise DataError(f"dataset {ds.name!r} has inputs of shape {shape}; expected (C, H, W)")
    return {"in_channels": shape[0], "num_classes": ds.num_classes}


def _mobilenet_kwargs(ds: Dataset) -> dict[str, Any]:
    kw = _image_kwargs(ds)
    kw["input_size"] = ds.shapes()[ds.input_names[0]][1]
    return kw


def _series_kwargs(ds: Dataset) -> dict[str, Any]:
    shape = ds.shapes()[ds.input_names[0]]
    if len(shape) != 2:
        raise DataError(f"dataset {ds.name!r} has inputs of shape {shape}; expected (C, T)")
    return {"in_channels": shape[0], "num_classes": ds.num_classes}


def _token_kwargs(ds: Dataset) -> dict[str, Any]:
    if ds.input_names != ("input_ids", "attention_mask"):
        raise DataError(
            f"dataset {ds.name!r} has inputs {ds.input_names}; expected input_ids, attention_mask"
        )
    ids = ds.inputs["input_ids"]
    vocab = int(ds.meta.get("vocab_size", int(ids.max()) + 1))
    return {"vocab_size": vocab, "num_classes": ds.num_classes, "max_len": int(ids.shape[1])}


def _vector_kwargs(ds: Dataset) -> dict[str, Any]:
    shape = ds.shapes()[ds.input_names[0]]
    if len(shape) != 1:
        raise DataError(f"dataset {ds.name!r} has inputs of shape {shape}; expected (features,)")
    return {"in_features": shape[0]}


_KWARGS: dict[str, Callable[[Dataset], dict[str, Any]]] = {
    "cnn": _image_kwargs,
    "mobilenet": _mobilenet_kwargs,
    "mbconv": _mobilenet_kwargs,
    "cnn1d": _series_kwargs,
    "transformer": _token_kwargs,
    "autoencoder": _vector_kwargs,
}

ARCHITECTURES: dict[str, ArchInfo] = {
    a.name: a
    for a in (
        ArchInfo("cnn", CNN, "digits", "classification", "small 3-layer CNN", 20, 3e-3, 32),
        ArchInfo(
            "mobilenet",
            MobileNet,
            "shapes",
            "classification",
            "MobileNetV1 (depthwise-separable) with a width multiplier",
            10,
            3e-3,
            64,
            {"width": 0.25},
        ),
        ArchInfo(
            "mbconv",
            MBConvNet,
            "textures",
            "classification",
            "MobileNetV2-style inverted residuals: width, depth, kernel, expansion, resolution "
            "(the search space of `edgeloop search mobilenet`)",
            10,
            3e-3,
            64,
            {"width": 0.5, "depth": 1},
        ),
        ArchInfo(
            "cnn1d", CNN1d, "har", "classification", "depthwise-separable 1-D CNN", 15, 3e-3, 32
        ),
        ArchInfo(
            "transformer",
            TokenTransformer,
            "tokens",
            "classification",
            "small transformer encoder over token ids + attention mask",
            6,
            1e-3,
            64,
        ),
        ArchInfo(
            "autoencoder",
            DenseAutoencoder,
            "anomaly",
            "anomaly",
            "dense autoencoder; the output is the reconstruction",
            40,
            3e-3,
            64,
        ),
    )
}


def list_architectures() -> list[str]:
    """Names of the zoo's architectures."""
    return sorted(ARCHITECTURES)


def arch_info(arch: str) -> ArchInfo:
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise UnknownNameError(
            f"unknown architecture {arch!r}; known architectures: {', '.join(list_architectures())}"
        ) from None


def kwargs_for(arch: str, dataset: Dataset) -> dict[str, Any]:
    """Builder kwargs that fit ``arch`` to ``dataset`` (channels, classes, sizes)."""
    info = arch_info(arch)
    return {**info.defaults, **_KWARGS[arch](dataset)}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """A freshly initialised model of the named architecture.

    ``kwargs`` go to its constructor, e.g. ``build_model("mobilenet", width=0.5, input_size=224,
    num_classes=1000)``; an unknown keyword is an :class:`UnknownNameError` naming the valid ones.
    """
    info = arch_info(arch)
    import inspect

    params = inspect.signature(info.builder).parameters
    bad = sorted(set(kwargs) - set(params))
    if bad:
        raise UnknownNameError(
            f"architecture {arch!r} takes no option(s) {', '.join(bad)}; "
            f"it takes: {', '.join(params)}"
        )
    try:
        return info.builder(**kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"cannot build {arch!r} with {kwargs}: {e}") from e
