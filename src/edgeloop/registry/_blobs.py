"""Content-addressed file store: ``<root>/blobs/sha256/ab/abcdef...``, written atomically.

A file is hashed while it is copied to a temp name beside its destination, then renamed into
place, so a crash never leaves a partial blob under a hash name and two writers of the same
content end with one file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from edgeloop.errors import FileError, IntegrityError, RegistryError
from edgeloop.registry._types import BlobInfo

__all__ = ["BlobStore", "media_type_for"]

_CHUNK = 1 << 20
_MEDIA_TYPES = {
    ".onnx": "application/onnx",
    ".ort": "application/x-onnxruntime-ort",
    ".elb": "application/vnd.edgeloop.bundle",
    ".json": "application/json",
    ".pt": "application/x-pytorch",
}


def media_type_for(path: str | Path) -> str:
    return _MEDIA_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def relpath(sha256: str) -> str:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise RegistryError(f"{sha256!r} is not a sha256 hex digest (64 lowercase hex digits)")
        return f"blobs/sha256/{sha256[:2]}/{sha256}"

    def path(self, sha256: str) -> Path:
        return self.root / self.relpath(sha256)

    def put_file(self, src: str | Path, media_type: str | None = None) -> BlobInfo:
        """Store ``src`` under its hash (a no-op if that content is already there)."""
        src = Path(src)
        if not src.is_file():
            raise FileError(f"artifact {str(src)!r} does not exist or is not a file")
        tmp_dir = self.root / "blobs" / "tmp"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix="in-", suffix=".tmp", dir=tmp_dir)
        except OSError as e:
            raise FileError(f"cannot write to the registry data dir {str(self.root)!r}: {e}") from e
        tmp = Path(tmp_name)
        try:
            h, length = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                while block := f.read(_CHUNK):
                    h.update(block)
                    out.write(block)
                    length += len(block)
                out.flush()
                os.fsync(out.fileno())
            if length == 0:
                raise RegistryError(f"artifact {str(src)!r} is empty")
            sha = h.hexdigest()
            dest = self.path(sha)
            if dest.is_file() and dest.stat().st_size == length:
                tmp.unlink()
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dest)
        except OSError as e:
            raise FileError(f"cannot store artifact {str(src)!r}: {e.strerror or e}") from e
        finally:
            tmp.unlink(missing_ok=True)
        return BlobInfo(sha, length, media_type or media_type_for(src), self.relpath(sha))

    def read(self, sha256: str) -> bytes:
        """The blob's bytes, checked against its hash."""
        p = self.path(sha256)
        try:
            data = p.read_bytes()
        except FileNotFoundError as e:
            raise RegistryError(f"blob {sha256} is missing from {str(self.root)!r}") from e
        except OSError as e:
            raise FileError(f"cannot read blob {str(p)!r}: {e.strerror or e}") from e
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise IntegrityError(f"blob {str(p)!r} is corrupt: expected sha256 {sha256}, got {got}")
        return data

    def check(self, sha256: str, length: int) -> str | None:
        """What is wrong with a stored blob (missing, wrong length, wrong hash), or None."""
        p = self.path(sha256)
        h, got_length = hashlib.sha256(), 0
        try:
            with open(p, "rb") as f:
                while block := f.read(_CHUNK):
                    h.update(block)
                    got_length += len(block)
        except FileNotFoundError:
            return f"blob {sha256} is missing ({str(p)!r})"
        except OSError as e:
            return f"blob {sha256} cannot be read: {e.strerror or e}"
        if got_length != length:
            return f"blob {sha256} is {got_length} bytes, the registry recorded {length}"
        if h.hexdigest() != sha256:
            return f"blob {sha256} is corrupt: its content hashes to {h.hexdigest()}"
        return None

    def stored(self) -> list[tuple[str, float]]:
        """Every blob file under the store: (sha256, modification time)."""
        base = self.root / "blobs" / "sha256"
        out = []
        for p in sorted(base.glob("??/*")) if base.is_dir() else ():
            if p.is_file() and len(p.name) == 64 and p.parent.name == p.name[:2]:
                out.append((p.name, p.stat().st_mtime))
        return out

    def export(self, sha256: str, dest: str | Path) -> Path:
        """Copy a blob out to ``dest`` (atomically), checking its hash on the way."""
        from edgeloop._io import atomic_write_bytes

        atomic_write_bytes(dest, self.read(sha256))
        return Path(dest)
