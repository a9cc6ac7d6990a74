"""The model zoo: reference PyTorch architectures, their training loop, checkpoints, and ONNX
export with an output parity check."""

from edgeloop.zoo._augment import AUGMENTATIONS, augmentation
from edgeloop.zoo._checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from edgeloop.zoo._export import export_onnx
from edgeloop.zoo._fit import (
    FitResult,
    evaluate_model,
    fit,
    forward,
    predict,
    primary_metric,
    to_tensors,
)
from edgeloop.zoo._registry import ARCHITECTURES, ArchInfo, build_model, list_architectures
from edgeloop.zoo._train import TrainResult, train

__all__ = [
    "ARCHITECTURES",
    "AUGMENTATIONS",
    "CHECKPOINT_FORMAT",
    "ArchInfo",
    "FitResult",
    "TrainResult",
    "augmentation",
    "build_model",
    "evaluate_model",
    "export_onnx",
    "fit",
    "forward",
    "list_architectures",
    "load_checkpoint",
    "predict",
    "primary_metric",
    "save_checkpoint",
    "to_tensors",
    "train",
]
