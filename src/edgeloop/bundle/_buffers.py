"""A ``bytes`` object filled in place: the decrypted model is written once, never copied.

onnxruntime's Python API accepts a model only as ``bytes``. Decrypting into a ``bytearray`` and
converting would hold two copies of the model and spend a memcpy of its size (for a 90 MB model
that is ~90 MiB of peak memory and tens of milliseconds). CPython's documented C API creates an
uninitialised bytes object with ``PyBytes_FromStringAndSize(NULL, n)`` for its owner to fill
before anyone else sees it; :func:`writable_bytes` does that through ``ctypes``. The object has
not been hashed or shared while it is written, so its immutability is intact for every other
holder. Elsewhere than CPython it falls back to a bytearray and one copy.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["writable_bytes"]

_CPYTHON = platform.python_implementation() == "CPython"
if _CPYTHON:
    _new = ctypes.pythonapi.PyBytes_FromStringAndSize
    _new.restype = ctypes.py_object
    _new.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
    _addr = ctypes.pythonapi.PyBytes_AsString
    _addr.restype = ctypes.c_void_p
    _addr.argtypes = [ctypes.py_object]


class FilledBytes:
    """Holds the result; ``value`` is the bytes object once the ``with`` block has finished."""

    value: bytes = b""


@contextmanager
def writable_bytes(n: int) -> Iterator[tuple[memoryview, FilledBytes]]:
    """Yield a writable view of ``n`` bytes and a holder whose ``value`` is set on success."""
    out = FilledBytes()
    if _CPYTHON and n > 0:
        obj = _new(None, n)
        array = (ctypes.c_char * n).from_address(_addr(obj))
        view = memoryview(array).cast("B")
        try:
            yield view, out
        finally:
            view.release()
            del array
        out.value = obj
    else:
        buf = bytearray(n)
        view = memoryview(buf)
        try:
            yield view, out
        finally:
            view.release()
        out.value = bytes(buf)
