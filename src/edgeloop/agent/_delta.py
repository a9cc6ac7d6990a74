"""Updating by delta: take the delta the director assigned, rebuild the assigned bundle.

The signed TUF targets list deltas with ``custom.delta`` (``update._repo``); the director picks
one per device (``Assignment.delta``: a delta from the bundle the device reported running to
the assigned one, smaller than that bundle). The agent takes it only if the signed targets
list it with the assignment's hash and length, from the bundle it runs, to the assigned one.
The rebuilt bundle (``bundle.apply_delta``: every check of a full bundle, then B's signed
payload hash) goes to the ordinary install. Any failure on the delta path returns ``None``:
the caller downloads the full bundle (the fallback Mender and balena use too). A version the
signed targets no longer list (revoked) is refused before anything is fetched, as for a full
download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeloop._io import read_bytes
from edgeloop.errors import EdgeloopError, UpdateError
from edgeloop.protocol import Assignment

if TYPE_CHECKING:
    from edgeloop.bundle import DeviceKey, Trust
    from edgeloop.update import TargetInfo, UpdateClient

__all__ = ["DeltaResult", "assigned_delta", "fetch_by_delta"]


@dataclass(frozen=True)
class DeltaResult:
    """What a delta attempt did: the rebuilt bundle (None: fall back) and the bytes fetched."""

    bundle: bytes | None
    target: str | None
    downloaded: int
    error: str | None = None


def assigned_delta(
    listed: dict[str, TargetInfo], assignment: Assignment, base_sha256: str
) -> TargetInfo | None:
    """The delta the signed assignment names, if the signed targets list it as a delta from
    the bundle ``base_sha256`` to the assigned bundle, with the assignment's hash and length."""
    d = assignment.delta
    info = listed.get(str(d.get("target"))) if d else None
    if d is None or info is None:
        return None
    meta = info.custom.get("delta")
    if (
        not isinstance(meta, dict)
        or info.sha256 != d.get("sha256")
        or info.length != d.get("length")
        or meta.get("bundle_sha256") != assignment.sha256
        or meta.get("base_sha256") != base_sha256
    ):
        return None
    return info


def fetch_by_delta(
    client: UpdateClient,
    assignment: Assignment,
    base_sha256: str,
    base: Callable[[], tuple[bytes, bytes]],
    trust: Trust,
    device_key: DeviceKey,
    recipient: dict[str, Any] | None,
    installed_version: int | None,
) -> DeltaResult:
    """Try the delta path (synchronous; ``client`` is closed here).

    ``base_sha256``: the bundle this device runs; ``base``: returns that bundle and its
    decrypted model (called only when a delta is listed).
    Raises :class:`UpdateError` when the assigned bundle is not in the signed targets.
    """
    from edgeloop.bundle import apply_delta

    with client:
        listed = client.listed()
        full = listed.get(assignment.target)
        if full is None or full.sha256 != assignment.sha256 or full.length != assignment.length:
            raise UpdateError(
                f"target {assignment.target!r} (sha256 {assignment.sha256[:16]}) is not in the "
                "signed TUF targets"
            )
        pick = assigned_delta(listed, assignment, base_sha256)
        if pick is None:
            return DeltaResult(
                None,
                None,
                0,
                f"the assigned delta {assignment.delta} is not listed as one "
                "from this device's bundle",
            )
        try:
            path = client.fetch_bundle(pick.path, client.metadata_dir / "downloads")
        except EdgeloopError as e:
            return DeltaResult(None, pick.path, 0, f"delta {pick.path!r} not fetched: {e}")
    try:
        delta = read_bytes(path, "downloaded delta")
    finally:
        path.unlink(missing_ok=True)
    try:
        base_bundle, base_model = base()
        bundle = apply_delta(
            delta,
            base_bundle,
            base_model,
            trust,
            device_key,
            recipient=recipient,
            installed_version=installed_version,
            expect_sha256=assignment.sha256,
        )
    except (EdgeloopError, OSError) as e:
        return DeltaResult(None, pick.path, len(delta), f"delta {pick.path!r} refused: {e}")
    return DeltaResult(bundle, pick.path, len(delta))
