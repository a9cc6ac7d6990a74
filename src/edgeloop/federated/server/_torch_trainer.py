"""The full fine-tune trainer for devices that have PyTorch: every floating-point tensor of the
model's state (weights, biases, normalization statistics) is what a round averages.

Same interface as the head trainer (``federated.device.LocalTrainer``): ``fit`` loads the global
arrays into the module, runs SGD with momentum over the node's labelled raw inputs (FedProx's
proximal term when the round sends ``proximal-mu``) and returns the new state; ``evaluate``
scores arrays on the node's held-out samples. One module may be shared by many simulated nodes:
each call loads its arrays first. :func:`export_candidate` turns the final arrays into the
candidate ONNX model (``zoo.torch_to_onnx``, the project's one exporter) with the
``edgeloop_embedding`` output.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import DataError
from edgeloop.federated.device import TrainConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TorchTrainer", "export_candidate", "state_arrays"]

NDArrays = dict[str, npt.NDArray[np.generic]]


def state_arrays(model: nn.Module) -> dict[str, npt.NDArray[np.float32]]:
    """The module's floating-point state as float32 arrays (integer counters left out)."""
    return {k: v.detach().cpu().numpy().astype(np.float32)
            for k, v in model.state_dict().items() if v.dtype.is_floating_point}


def _load(model: nn.Module, arrays: NDArrays) -> None:
    import torch

    state = model.state_dict()
    keys = {k for k, v in state.items() if v.dtype.is_floating_point}
    if set(arrays) != keys:
        raise DataError(f"arrays do not match the model's state: {len(arrays)} arrays for "
                        f"{len(keys)} floating-point tensors")
    for k in keys:
        value = torch.from_numpy(np.asarray(arrays[k], np.float32)).to(state[k].dtype)
        if value.shape != state[k].shape:
            raise DataError(f"array {k!r}: shape {tuple(value.shape)}, the model's "
                            f"{tuple(state[k].shape)}")
        state[k] = value
    model.load_state_dict(state)


class TorchTrainer:
    """Fine-tune a whole torch module on a node's labelled raw inputs."""

    def __init__(self, model: nn.Module, train: tuple[npt.NDArray[Any], npt.NDArray[np.int64]],
                 held_out: tuple[npt.NDArray[Any], npt.NDArray[np.int64]]) -> None:
        self.model, self.train, self.held_out = model, train, held_out

    def fit(self, arrays: NDArrays, config: TrainConfig) -> tuple[NDArrays, int, float]:
        import torch
        import torch.nn.functional as F  # noqa: N812

        x, y = self.train
        if len(y) == 0:
            raise DataError("train: no labelled samples (labels come from delayed feedback)")
        _load(self.model, arrays)
        anchor = [p.detach().clone() for p in self.model.parameters()]
        opt = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                              weight_decay=config.l2)
        gen = torch.Generator().manual_seed(config.seed)
        xt = torch.from_numpy(np.asarray(x, np.float32))
        yt = torch.from_numpy(np.asarray(y, np.int64))
        self.model.train()
        loss_sum, seen = 0.0, 0
        for _ in range(config.epochs):
            order = torch.randperm(len(yt), generator=gen)
            loss_sum, seen = 0.0, 0
            for start in range(0, len(yt), config.batch_size):
                idx = order[start:start + config.batch_size]
                if len(idx) < 2 and len(yt) >= 2:
                    continue  # batch norm needs two samples
                loss = F.cross_entropy(self.model(xt[idx]), yt[idx])
                if config.proximal_mu > 0:
                    prox = sum(((p - a) ** 2).sum()
                               for p, a in zip(self.model.parameters(), anchor, strict=True))
                    loss = loss + config.proximal_mu / 2 * prox
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                seen += len(idx)
        self.model.eval()
        new = state_arrays(self.model)
        if not all(np.all(np.isfinite(v)) for v in new.values()):
            raise DataError(f"train: the model diverged (lr={config.lr})")
        return dict(new), len(y), loss_sum / max(seen, 1)

    def evaluate(self, arrays: NDArrays) -> tuple[float, float, int]:
        import torch
        import torch.nn.functional as F  # noqa: N812

        x, y = self.held_out
        if len(y) == 0:
            raise DataError("evaluate: this node holds out no labelled samples")
        _load(self.model, arrays)
        self.model.eval()
        with torch.no_grad():
            logits = self.model(torch.from_numpy(np.asarray(x, np.float32)))
            yt = torch.from_numpy(np.asarray(y, np.int64))
            loss = float(F.cross_entropy(logits, yt))
            acc = float((logits.argmax(1) == yt).float().mean())
        return loss, acc, len(y)


def export_candidate(model: nn.Module, arrays: NDArrays, sample: npt.NDArray[Any],
                     input_name: str, output_name: str) -> bytes:
    """The module with ``arrays`` loaded, as ONNX with the ``edgeloop_embedding`` output."""
    import torch

    from edgeloop.federated.server._onnx_head import with_embedding
    from edgeloop.zoo import torch_to_onnx

    _load(model, arrays)
    model.eval()
    buf = io.BytesIO()
    torch_to_onnx(model, (torch.from_numpy(np.asarray(sample[:2], np.float32)),), buf,
                  input_names=[input_name], output_names=[output_name], exporter="torchscript")
    return with_embedding(buf.getvalue())
