"""ONNX files as the ONNX passes see them: load, save (external data aware), hash, size, inputs.

Models over 2 GB cannot be one protobuf, so their weights live in external data files next to
the ``.onnx``. Every helper here follows those files: loading pulls them in, saving writes them
next to the new file (both renamed into place, so a crash never leaves half a model), the size
counts them and the hash covers them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgeloop.artifacts import TensorSpec, sha256_file
from edgeloop.errors import FileError, ModelFormatError

__all__ = [
    "EXTERNAL_THRESHOLD",
    "InputSpec",
    "copy_model",
    "external_files",
    "input_specs",
    "load_onnx",
    "model_sha256",
    "model_size",
    "name_nodes",
    "save_onnx",
    "uses_external_data",
]

# protobuf's hard limit is 2 GiB; keep a margin for the graph itself
EXTERNAL_THRESHOLD = 1_800_000_000


@dataclass(frozen=True)
class InputSpec:
    """One graph input: name, numpy dtype and shape (None for a dynamic or symbolic dim)."""

    name: str
    dtype: np.dtype[np.generic]
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({self.dtype} [{dims}])"

    def to_tensor_spec(self) -> TensorSpec:
        return TensorSpec(name=self.name, dtype=str(self.dtype), shape=self.shape)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileError(f"model {str(path)!r} does not exist")
    if path.is_dir():
        raise FileError(f"model {str(path)!r} is a directory, expected an .onnx file")


def external_files(path: str | Path) -> list[Path]:
    """The external data files an ONNX file refers to (without loading the weights)."""
    p = Path(path)
    _check_exists(p)
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise ModelFormatError(f"{str(p)!r} is not an ONNX model: {e}") from e
    locations: set[str] = set()
    for t in _initializers(proto.graph):
        if t.data_location == TensorProto.EXTERNAL:
            locations.update(e.value for e in t.external_data if e.key == "location")
    return [p.parent / loc for loc in sorted(locations)]


def _initializers(graph: onnx.GraphProto) -> list[TensorProto]:
    out = list(graph.initializer)
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out.extend(_initializers(a.g))
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    out.extend(_initializers(g))
    return out


def uses_external_data(path: str | Path) -> bool:
    return bool(external_files(path))


def load_onnx(path: str | Path, *, with_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX file and its external data; errors name the file."""
    p = Path(path)
    _check_exists(p)
    try:
        return onnx.load(str(p), load_external_data=with_weights)
    except Exception as e:  # protobuf DecodeError, missing external file ...
        raise ModelFormatError(f"{str(p)!r} is not a loadable ONNX model: {e}") from e


def save_onnx(model: onnx.ModelProto, path: str | Path, *, external: bool | None = None) -> Path:
    """Write ``model`` to ``path`` atomically; weights go to ``<name>.data`` when ``external``
    (default: when the model is too big for one protobuf)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if external is None:
        external = model.ByteSize() > EXTERNAL_THRESHOLD
    data_name = dest.name + ".data"
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp:
        tmp_model = Path(tmp) / dest.name
        try:
            if external:
                onnx.save_model(
                    model,
                    str(tmp_model),
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location=data_name,
                    size_threshold=1024,
                )
            else:
                onnx.save_model(model, str(tmp_model))
        except (OSError, ValueError) as e:
            raise FileError(f"cannot write model {str(dest)!r}: {e}") from e
        if (Path(tmp) / data_name).exists():
            os.replace(Path(tmp) / data_name, dest.parent / data_name)
        os.replace(tmp_model, dest)
    return dest


def copy_model(src: str | Path, dest: str | Path) -> Path:
    """Copy an ONNX file with its external data files (same relative locations)."""
    s, d = Path(src), Path(dest)
    if s.resolve() == d.resolve():
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    externals = external_files(s)
    if externals:  # external locations are relative to the file: keep the names
        proto = load_onnx(s)
        return save_onnx(proto, d, external=True)
    tmp = d.with_name(f".{d.name}.tmp")
    shutil.copyfile(s, tmp)
    os.replace(tmp, d)
    return d


def model_size(path: str | Path) -> int:
    """Bytes on disk: the ONNX file plus its external data files."""
    p = Path(path)
    return p.stat().st_size + sum(f.stat().st_size for f in external_files(p))


def model_sha256(path: str | Path) -> str:
    """sha256 of the file; for a model with external data, of the file and every data file."""
    p = Path(path)
    externals = external_files(p)
    if not externals:
        return sha256_file(p)
    h = hashlib.sha256(sha256_file(p).encode())
    for f in externals:
        h.update(f"\n{f.name}:{sha256_file(f)}".encode())
    return h.hexdigest()


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """Graph inputs that are not initializers, in graph order."""
    inits = {t.name for t in model.graph.initializer}
    specs: list[InputSpec] = []
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, TypeError, ValueError):
            raise ModelFormatError(
                f"model input {vi.name!r} has an element type numpy cannot hold ({tt.elem_type})"
            ) from None
        shape = tuple(
            int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tt.shape.dim
        )
        specs.append(InputSpec(vi.name, dtype, shape))
    return specs


def name_nodes(model: onnx.ModelProto) -> int:
    """Give every unnamed node a unique name (``OpType_i``) so passes can refer to it."""
    used = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{i}"
        while name in used:
            name += "_"
        node.name = name
        used.add(name)
        named += 1
    return named
