"""Download an assigned bundle through TUF (``edgeloop.update.UpdateClient``; synchronous).

The client refreshes root (following rotations), timestamp, snapshot and targets metadata,
then this module checks that the signed target's sha256 and length are the ones the signed
assignment names before the download, which python-tuf checks against the same hashes.
Failures are :class:`~edgeloop.errors.UpdateError` (metadata or target refused) or
:class:`~edgeloop.errors.FileError` (disk): the agent keeps its model and retries later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._io import read_bytes
from edgeloop.errors import UpdateError
from edgeloop.protocol import Assignment

if TYPE_CHECKING:
    from edgeloop.update import UpdateClient

__all__ = ["check_listed", "fetch_target"]


def _check_info(client: UpdateClient, assignment: Assignment) -> None:
    info = client.target_info(assignment.target)
    if info is None:
        raise UpdateError(f"target {assignment.target!r} is not in the signed TUF targets")
    if info.sha256 != assignment.sha256 or info.length != assignment.length:
        raise UpdateError(
            f"TUF target {assignment.target!r} is sha256 {info.sha256[:16]} and "
            f"{info.length} bytes; the signed assignment says {assignment.sha256[:16]} and "
            f"{assignment.length}"
        )


def check_listed(client: UpdateClient, assignment: Assignment) -> None:
    """Refuse (:class:`UpdateError`) an assignment whose target the release side's signed TUF
    targets do not list with the same sha256 and length; nothing is downloaded.

    The agent calls it before it asks the server for the bundle's key, so a director alone
    (a compromised server) learns nothing and is answered by the device's own TUF check.
    ``client``: an UpdateClient on the device's TUF state; closed here.
    """
    with client:
        _check_info(client, assignment)


def fetch_target(client: UpdateClient, assignment: Assignment) -> bytes:
    """The bytes of ``assignment.target``, verified by TUF against the signed assignment.

    ``client``: an UpdateClient on the device's TUF state; closed here.
    """
    with client:
        _check_info(client, assignment)
        path = client.fetch_bundle(assignment.target, client.metadata_dir / "downloads")
    try:
        return read_bytes(path, "downloaded bundle")
    finally:
        path.unlink(missing_ok=True)
