"""The device side of the update channel: ``tuf.ngclient.Updater`` over httpx.

python-tuf does every check (signatures and thresholds, root rotation chains, version
rollback, expiry/freeze, snapshot/targets consistency, length limits against endless data,
target hashes against arbitrary installs); this module only supplies the transport and turns
tuf's exceptions into :class:`UpdateError` with the role and URL in the message.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from edgeloop._io import atomic_path
from edgeloop.bundle import Trust
from edgeloop.errors import FileError, UpdateError

__all__ = ["HttpxFetcher", "TargetInfo", "UpdateClient", "fetch_bundle"]


class HttpxFetcher(FetcherInterface):
    """python-tuf fetcher on an ``httpx.Client`` (streams; maps HTTP errors and timeouts)."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        timeout_s: float = 30.0,
        chunk_size: int = 1 << 16,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)
        self._chunk = chunk_size

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            resp = self._client.send(self._client.build_request("GET", url), stream=True)
        except httpx.TimeoutException as e:
            raise tuf_errors.SlowRetrievalError(f"timed out connecting to {url}") from e
        if resp.status_code >= 400:
            resp.close()
            raise tuf_errors.DownloadHTTPError(
                f"GET {url}: HTTP {resp.status_code}", resp.status_code
            )
        return self._chunks(resp, url)

    def _chunks(self, resp: httpx.Response, url: str) -> Iterator[bytes]:
        try:
            yield from resp.iter_bytes(self._chunk)
        except httpx.TimeoutException as e:
            raise tuf_errors.SlowRetrievalError(f"download of {url} stalled") from e
        except httpx.TransportError as e:  # the server went away mid-body
            raise tuf_errors.DownloadError(
                f"download of {url} broke off: {type(e).__name__}: {e}"
            ) from e
        finally:
            resp.close()

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class TargetInfo:
    path: str
    sha256: str
    length: int
    custom: dict[str, Any]


def _explain(e: Exception) -> str:
    kinds = {
        tuf_errors.ExpiredMetadataError: "expired metadata (freeze attack or stale repository)",
        tuf_errors.BadVersionNumberError: "metadata version mismatch (rollback or mix-and-match)",
        tuf_errors.UnsignedMetadataError: "metadata not signed by the trusted keys",
        tuf_errors.LengthOrHashMismatchError: "length or hash differs from signed metadata",
        tuf_errors.DownloadLengthMismatchError: "download larger than allowed (endless data)",
        tuf_errors.SlowRetrievalError: "download too slow",
        tuf_errors.DownloadHTTPError: "HTTP error",
    }
    for cls, what in kinds.items():
        if isinstance(e, cls):
            return f"{what}: {e}"
    cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
    return f"{type(e).__name__}: {e}{cause}"


class UpdateClient:
    """A device's view of one TUF repository.

    ``root``: the trusted root metadata the device shipped with (``KEYS/root.json``);
    ``metadata_dir`` caches verified metadata between runs; ``verify``: the TLS trust of the
    default fetcher (a pinned CA's ``ssl.SSLContext``). Each :meth:`refresh` builds a new
    ``Updater`` (python-tuf refreshes once per instance).
    """

    def __init__(
        self,
        base_url: str,
        root: bytes,
        metadata_dir: str | Path,
        *,
        metadata_url: str | None = None,
        targets_url: str | None = None,
        fetcher: FetcherInterface | None = None,
        config: UpdaterConfig | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        base = base_url.rstrip("/")
        self.metadata_url = metadata_url or f"{base}/metadata/"
        self.targets_url = targets_url or f"{base}/targets/"
        self.root = root
        self.metadata_dir = Path(metadata_dir)
        self._own_fetcher = fetcher is None  # a given fetcher belongs to its owner
        self.fetcher = fetcher or HttpxFetcher(httpx.Client(timeout=30.0, verify=verify))
        self.config = config or UpdaterConfig()
        self._updater: Updater | None = None

    def refresh(self) -> None:
        try:
            self.metadata_dir.mkdir(parents=True, exist_ok=True)
            self._updater = Updater(
                str(self.metadata_dir),
                self.metadata_url,
                target_base_url=self.targets_url,
                fetcher=self.fetcher,
                config=self.config,
                bootstrap=self.root,
            )
            self._updater.refresh()
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError, ValueError) as e:
            self._updater = None
            raise UpdateError(
                f"update metadata from {self.metadata_url} refused: {_explain(e)}"
            ) from e
        except OSError as e:
            self._updater = None
            raise FileError(f"cannot write TUF metadata to {str(self.metadata_dir)!r}: {e}") from e

    def _ready(self) -> Updater:
        if self._updater is None:
            self.refresh()
        assert self._updater is not None
        return self._updater

    def target_info(self, target_path: str) -> TargetInfo | None:
        """The signed length, hash and custom fields of ``target_path`` (None if not listed)."""
        try:
            info = self._ready().get_targetinfo(target_path)
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise UpdateError(f"target {target_path!r} refused: {_explain(e)}") from e
        if info is None:
            return None
        custom = info.unrecognized_fields.get("custom")
        return TargetInfo(
            info.path,
            info.hashes["sha256"],
            info.length,
            custom if isinstance(custom, dict) else {},
        )

    def listed(self) -> dict[str, TargetInfo]:
        """Every target the current top-level targets metadata lists (verified by refresh).

        python-tuf keeps the targets metadata it verified as ``targets.json`` in the metadata
        dir; it is read back here, after a refresh in this client, rather than through the
        Updater's private state.
        """
        from tuf.api.metadata import Metadata, Targets

        self._ready()
        try:
            md = Metadata[Targets].from_bytes((self.metadata_dir / "targets.json").read_bytes())
        except (OSError, ValueError) as e:
            raise UpdateError(f"verified targets metadata unreadable: {e}") from e
        if not isinstance(md.signed, Targets):
            raise UpdateError(f"targets.json holds a {md.signed.type!r} role, expected targets")
        out = {}
        for path, info in md.signed.targets.items():
            custom = info.unrecognized_fields.get("custom")
            out[path] = TargetInfo(
                path,
                info.hashes.get("sha256", ""),
                info.length,
                custom if isinstance(custom, dict) else {},
            )
        return out

    def fetch_bundle(self, target_path: str, dest_dir: str | Path) -> Path:
        """Download ``target_path`` (verified by TUF) into ``dest_dir``; return the file's path.

        The file is named after the target's last path part and written atomically; a cached
        copy whose length and hash match the signed metadata is reused without downloading.
        """
        updater = self._ready()
        out = Path(dest_dir) / Path(target_path).name
        try:
            info = updater.get_targetinfo(target_path)
            if info is None:
                raise UpdateError(f"target {target_path!r} is not in the signed targets metadata")
            if updater.find_cached_target(info, str(out)):
                return out
            with atomic_path(out) as tmp:
                updater.download_target(info, str(tmp))
            return out
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise UpdateError(f"target {target_path!r} refused: {_explain(e)}") from e
        except OSError as e:
            raise FileError(f"cannot write bundle to {str(out)!r}: {e}") from e

    def close(self) -> None:
        """Close the HTTP connections of the default fetcher (not of a given one)."""
        if self._own_fetcher and isinstance(self.fetcher, HttpxFetcher):
            self.fetcher.close()

    def __enter__(self) -> UpdateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trusted_root(self) -> bytes:
        """The newest root this client verified (after rotations), as stored bytes."""
        self._ready()
        return (self.metadata_dir / "root.json").read_bytes()

    def trust(self) -> Trust:
        """The bundle trust (release keys) carried by the newest verified root."""
        return Trust.from_root_bytes(self.trusted_root())


def fetch_bundle(
    base_url: str,
    target_path: str,
    *,
    root: bytes,
    metadata_dir: str | Path,
    dest_dir: str | Path,
    fetcher: FetcherInterface | None = None,
    config: UpdaterConfig | None = None,
) -> Path:
    """One-shot: refresh metadata from ``base_url``, download ``target_path`` into ``dest_dir``."""
    with UpdateClient(base_url, root, metadata_dir, fetcher=fetcher, config=config) as client:
        return client.fetch_bundle(target_path, dest_dir)
