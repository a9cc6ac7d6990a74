"""Download an assigned bundle through TUF (python-tuf's ngclient; synchronous, run in a thread).

The updater refreshes root (following rotations), timestamp, snapshot and targets metadata from
the server, checks that the signed target's sha256 and length are the ones the signed
assignment names, then downloads the target, which ngclient checks against the same hashes.
Every failure becomes :class:`~edgeloop.errors.UpdateError` (bad metadata or target) or stays
an ``OSError`` (disk): the agent keeps its model and retries later.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeloop.errors import UpdateError
from edgeloop.protocol import Assignment

__all__ = ["fetch_target"]


def fetch_target(
    tuf_dir: Path, server_url: str, identity: Mapping[str, Any], assignment: Assignment
) -> bytes:
    """The bytes of ``assignment.target``, verified by TUF against the assignment's hash."""
    from tuf.api.exceptions import DownloadError, RepositoryError
    from tuf.ngclient import Updater

    base = server_url.rstrip("/")
    meta_url = base + str(identity.get("tuf_metadata_url", "/tuf/metadata/"))
    targets_url = base + str(identity.get("tuf_targets_url", "/tuf/targets/"))
    downloads = tuf_dir / "downloads"
    downloads.mkdir(exist_ok=True)
    try:
        updater = Updater(
            metadata_dir=str(tuf_dir),
            metadata_base_url=meta_url,
            target_dir=str(downloads),
            target_base_url=targets_url,
            bootstrap=None,
        )
        updater.refresh()
        info = updater.get_targetinfo(assignment.target)
        if info is None:
            raise UpdateError(
                f"target {assignment.target!r} is not in the signed TUF targets metadata"
            )
        sha = info.hashes.get("sha256")
        if sha != assignment.sha256 or info.length != assignment.length:
            raise UpdateError(
                f"TUF target {assignment.target!r} is sha256 {str(sha)[:16]} and "
                f"{info.length} bytes; the signed assignment says {assignment.sha256[:16]} and "
                f"{assignment.length}"
            )
        fd, tmp = tempfile.mkstemp(prefix=".target.", suffix=".tmp", dir=downloads)
        os.close(fd)
        try:
            updater.download_target(info, filepath=tmp)
            with open(tmp, "rb") as f:
                return f.read()
        finally:
            Path(tmp).unlink(missing_ok=True)
    except (RepositoryError, DownloadError) as e:
        raise UpdateError(f"TUF refused {assignment.target!r}: {type(e).__name__}: {e}") from e
