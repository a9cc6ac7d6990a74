"""Download an assigned bundle through TUF (``edgeloop.update.UpdateClient``; synchronous).

The client refreshes root (following rotations), timestamp, snapshot and targets metadata,
then this module checks that the signed target's sha256 and length are the ones the signed
assignment names before the download, which python-tuf checks against the same hashes.
Failures are :class:`~edgeloop.errors.UpdateError` (metadata or target refused) or
:class:`~edgeloop.errors.FileError` (disk): the agent keeps its model and retries later.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop._io import read_bytes
from edgeloop.errors import UpdateError
from edgeloop.protocol import Assignment

if TYPE_CHECKING:
    from tuf.ngclient import FetcherInterface

__all__ = ["fetch_target"]


def fetch_target(
    tuf_dir: Path,
    server_url: str,
    identity: Mapping[str, Any],
    assignment: Assignment,
    fetcher: FetcherInterface | None = None,
) -> bytes:
    """The bytes of ``assignment.target``, verified by TUF against the signed assignment."""
    from edgeloop.update import UpdateClient

    base = server_url.rstrip("/")
    client = UpdateClient(
        base,
        read_bytes(tuf_dir / "root.json", "trusted TUF root"),
        tuf_dir,
        metadata_url=base + str(identity.get("tuf_metadata_url", "/tuf/metadata/")),
        targets_url=base + str(identity.get("tuf_targets_url", "/tuf/targets/")),
        fetcher=fetcher,
    )
    info = client.target_info(assignment.target)
    if info is None:
        raise UpdateError(f"target {assignment.target!r} is not in the signed TUF targets")
    if info.sha256 != assignment.sha256 or info.length != assignment.length:
        raise UpdateError(
            f"TUF target {assignment.target!r} is sha256 {info.sha256[:16]} and {info.length} "
            f"bytes; the signed assignment says {assignment.sha256[:16]} and {assignment.length}"
        )
    path = client.fetch_bundle(assignment.target, tuf_dir / "downloads")
    try:
        return read_bytes(path, "downloaded bundle")
    finally:
        path.unlink(missing_ok=True)
