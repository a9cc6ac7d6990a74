"""edgeloop: take a trained model to a fleet of edge devices and keep it good there.

The public API is re-exported here. Names from the build and service layers (which need torch,
onnx, fastapi or sqlalchemy) load lazily on first use, so ``import edgeloop`` stays light on a
device that has only the core install.
"""

import importlib as _importlib
import sys as _sys
import types as _types
from typing import Any as _Any

from edgeloop.artifacts import (
    DeviceProfile,
    DeviceReport,
    DriftReport,
    LineageRef,
    Manifest,
    ModelCard,
    PassSpec,
    Recipe,
    RolloutPlan,
    TensorSpec,
)
from edgeloop.errors import EdgeloopError

__version__ = "0.1.0"

# public name -> module that defines it, imported on first access
_LAZY: dict[str, str] = {
    "profile_device": "edgeloop.hardware",
    "load_target": "edgeloop.hardware",
    "list_targets": "edgeloop.hardware",
    "Session": "edgeloop.runtime",
    "Agent": "edgeloop.agent",
    "benchmark": "edgeloop.runtime",
    "evaluate": "edgeloop.runtime",
    "load_dataset": "edgeloop.data",
    "list_datasets": "edgeloop.data",
    "build_model": "edgeloop.zoo",
    "list_architectures": "edgeloop.zoo",
    "train": "edgeloop.zoo",
    "export_onnx": "edgeloop.zoo",
    "fit": "edgeloop.zoo",
    "load_checkpoint": "edgeloop.zoo",
    "pack_bundle": "edgeloop.bundle",
    "verify_bundle": "edgeloop.bundle",
    "decrypt_bundle": "edgeloop.bundle",
    "session_from_bundle": "edgeloop.bundle",
    "load_trust": "edgeloop.bundle",
    "sign_rollback": "edgeloop.bundle",
    "init_keys": "edgeloop.update",
    "rotate_key": "edgeloop.update",
    "fetch_bundle": "edgeloop.update",
    "Registry": "edgeloop.registry",
    "create_app": "edgeloop.fleet",
    "FleetSettings": "edgeloop.fleet",
    "optimize": "edgeloop.optimize",
    "load_recipe": "edgeloop.optimize",
    "list_recipes": "edgeloop.optimize",
    "prune": "edgeloop.optimize._prune",
    "sparsify": "edgeloop.optimize._sparsity",
    "distill": "edgeloop.optimize._distill",
    "qat": "edgeloop.optimize._qat",
    "binarize": "edgeloop.optimize._binary",
    "load_binary": "edgeloop.optimize._binary",
}

__all__ = [
    "DeviceProfile",
    "DeviceReport",
    "DriftReport",
    "EdgeloopError",
    "LineageRef",
    "Manifest",
    "ModelCard",
    "PassSpec",
    "Recipe",
    "RolloutPlan",
    "TensorSpec",
    "__version__",
    *sorted(_LAZY),
]


# Subpackages whose public function has the package's name: ``edgeloop.optimize`` stays the
# function even after ``import edgeloop.optimize._x`` (Python binds a loaded subpackage on its
# parent; this module's class swaps the subpackage for its function of the same name). Reach
# the package's other names with ``from edgeloop.optimize import ...``.
_FUNCTION_OVER_PACKAGE = frozenset({"optimize"})


class _Package(_types.ModuleType):
    def __setattr__(self, name: str, value: _Any) -> None:
        if name in _FUNCTION_OVER_PACKAGE and isinstance(value, _types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeloop' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
