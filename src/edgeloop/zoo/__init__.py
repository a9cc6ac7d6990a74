"""The model zoo: reference PyTorch architectures, their training loop, checkpoints, and ONNX
export with an output parity check."""

from edgeloop.zoo._architectures import (
    ARCHITECTURES,
    ArchInfo,
    arch_info,
    build_model,
    kwargs_for,
    list_architectures,
)
from edgeloop.zoo._augment import AUGMENTATIONS, Augment, augmentation, augmentation_name
from edgeloop.zoo._calibration import calibration_models
from edgeloop.zoo._checkpoint import (
    CHECKPOINT_FORMAT,
    check_checkpoint,
    input_spec_of,
    load_checkpoint,
    read_torch_file,
    save_checkpoint,
)
from edgeloop.zoo._export import card_path, export_onnx, torch_to_onnx
from edgeloop.zoo._fit import (
    FitResult,
    evaluate_model,
    fit,
    forward,
    predict,
    primary_metric,
    to_tensors,
)
from edgeloop.zoo._train import TrainResult, train

__all__ = [
    "calibration_models",
    "ARCHITECTURES",
    "AUGMENTATIONS",
    "CHECKPOINT_FORMAT",
    "ArchInfo",
    "Augment",
    "FitResult",
    "TrainResult",
    "arch_info",
    "augmentation",
    "augmentation_name",
    "build_model",
    "card_path",
    "check_checkpoint",
    "evaluate_model",
    "export_onnx",
    "fit",
    "forward",
    "input_spec_of",
    "kwargs_for",
    "list_architectures",
    "load_checkpoint",
    "predict",
    "primary_metric",
    "read_torch_file",
    "save_checkpoint",
    "to_tensors",
    "torch_to_onnx",
    "train",
]
