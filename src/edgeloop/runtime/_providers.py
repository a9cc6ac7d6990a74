"""Which ONNX Runtime execution providers to ask for, in order of preference."""

from __future__ import annotations

from collections.abc import Sequence

from edgeloop.errors import UnknownNameError

__all__ = ["PREFERENCE", "resolve_providers"]

# Accelerators first, then CPU. Providers that are not compute back-ends (AzureExecutionProvider
# calls a remote endpoint) are never chosen automatically.
PREFERENCE: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "QNNExecutionProvider",
    "NnapiExecutionProvider",
    "ACLExecutionProvider",
    "ArmNNExecutionProvider",
    "XnnpackExecutionProvider",
    "CPUExecutionProvider",
)

_SHORT = {p.removesuffix("ExecutionProvider").lower(): p for p in PREFERENCE}
_SHORT.update({"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"})


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The providers to pass to ONNX Runtime, CPU always last as the fallback.

    ``requested`` may use short names (``cuda``, ``openvino``, ``cpu``); a name that is not
    installed raises :class:`UnknownNameError` listing what is.
    """
    if requested is None:
        chosen = [p for p in PREFERENCE if p in available]
    else:
        chosen = []
        for name in requested:
            full = _SHORT.get(name.lower().removesuffix("executionprovider"), name)
            if full not in available:
                raise UnknownNameError(
                    f"execution provider {name!r} is not available; installed: "
                    f"{', '.join(available)}"
                )
            if full not in chosen:
                chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen
