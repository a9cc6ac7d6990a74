"""Small file helpers: atomic writes so a crash never leaves a half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from edgeloop.errors import FileError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "default_data_dir",
    "read_bytes",
]


@contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds."""
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FileError(f"cannot create directory {str(dest.parent)!r}: {e.strerror or e}") from e
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if mode is not None:
            os.chmod(tmp_path, mode)
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def _atomic_open(path: str | Path, mode: int | None) -> Iterator[IO[bytes]]:
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    try:
        with _atomic_open(path, mode) as f:
            f.write(data)
    except OSError as e:
        raise FileError(f"cannot write {str(path)!r}: {e.strerror or e}") from e


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    """Read a whole file, turning OS errors into one clear :class:`FileError`."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError as e:
        raise FileError(f"{what} {str(p)!r} does not exist") from e
    except IsADirectoryError as e:
        raise FileError(f"{what} {str(p)!r} is a directory, expected a file") from e
    except OSError as e:
        raise FileError(f"cannot read {what} {str(p)!r}: {e.strerror or e}") from e


def default_data_dir() -> Path:
    """``$EDGELOOP_DATA``, else the platform's user data dir for edgeloop.

    Where a local fleet server keeps its database, keys and admin token; here, beside the
    other file helpers, so the admin client finds the token without importing the server.
    """
    env = os.environ.get("EDGELOOP_DATA")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("edgeloop"))


@contextmanager
def scratch_cwd() -> Iterator[Path]:
    """Run a block with a fresh temporary directory as the working directory, then remove it.

    For third-party code that writes files into the current directory (ONNX Runtime's symbolic
    shape inference saves ``sym_shape_infer_temp.onnx`` and its ``.data`` there when it gives
    up): the user's directory stays clean. The working directory is process-wide, so this is
    for the single-threaded build steps only.
    """
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="edgeloop-scratch-") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(old)
