"""The device side of the update channel: ``tuf.ngclient.Updater`` over httpx.

python-tuf does every check (signatures and thresholds, root rotation chains, version
rollback, expiry/freeze, snapshot/targets consistency, length limits against endless data,
target hashes against arbitrary installs); this module only supplies the transport and turns
tuf's exceptions into :class:`UpdateError` with the role and URL in the message.
"""

from __future__ import annotations

import hashlib
import os
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

__all__ = ["HttpxFetcher", "TargetInfo", "UpdateClient", "chunk_list", "fetch_bundle"]


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

    def open_range(self, url: str, start: int) -> httpx.Response:
        """A streamed GET of ``url`` from byte ``start`` on (``Range``); the caller closes it.

        The answer may be 206 (the rest), 200 (the whole file: the server ignored the range)
        or 416; other statuses raise :class:`UpdateError`.
        """
        headers = {"Range": f"bytes={start}-"} if start else {}
        try:
            resp = self._client.send(
                self._client.build_request("GET", url, headers=headers), stream=True
            )
        except httpx.HTTPError as e:
            raise UpdateError(f"GET {url}: {type(e).__name__}: {e}") from e
        if resp.status_code >= 400 and resp.status_code != 416:
            resp.close()
            raise UpdateError(f"GET {url}: HTTP {resp.status_code}")
        return resp

    def close(self) -> None:
        self._client.close()


CHUNK_LIST_MAX = 256  # hashes per target in the signed metadata (the chunk size grows instead)


def chunk_list(data: bytes) -> dict[str, Any]:
    """``custom.chunks`` of a target: its sha256 per chunk, so a resumed download is checked
    piece by piece against signed metadata. 1 MiB chunks, larger for files over 256 MiB."""
    size = 1 << 20
    while -(-len(data) // size) > CHUNK_LIST_MAX:
        size <<= 1
    view = memoryview(data)
    hashes = [hashlib.sha256(view[o : o + size]).hexdigest() for o in range(0, len(data), size)]
    return {"size": size, "sha256": hashes}


def _chunks_of(custom: dict[str, Any], length: int) -> tuple[int, list[str]] | None:
    c = custom.get("chunks")
    if not isinstance(c, dict):
        return None
    size, hashes = c.get("size"), c.get("sha256")
    if (
        not isinstance(size, int)
        or isinstance(size, bool)
        or size < 1
        or not isinstance(hashes, list)
    ):
        return None
    if len(hashes) != -(-length // size) or not all(isinstance(h, str) for h in hashes):
        return None
    return size, hashes


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
            if isinstance(self.fetcher, HttpxFetcher):
                self._resumable(info, out)
                return out
            with atomic_path(out) as tmp:
                updater.download_target(info, str(tmp))
            return out
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise UpdateError(f"target {target_path!r} refused: {_explain(e)}") from e
        except OSError as e:
            raise FileError(f"cannot write bundle to {str(out)!r}: {e}") from e

    def _resumable(self, info: Any, out: Path) -> None:
        """Download a target into ``out`` through a partial file that survives a broken link.

        ``out.parent/<sha256>.part`` keeps what arrived; the next call asks for the rest
        (HTTP ``Range``). With a signed chunk list (``custom.chunks``), the partial file is
        checked chunk by chunk before resuming (a bad chunk and what follows are dropped) and
        each chunk as it completes; the whole file is checked against the signed length and
        sha256 at the end (python-tuf's check), and never grows past the signed length.
        """
        assert isinstance(self.fetcher, HttpxFetcher)
        length, digest = int(info.length), str(info.hashes["sha256"])
        dirname, _, base = str(info.path).rpartition("/")
        url = f"{self.targets_url}{dirname + '/' if dirname else ''}{digest}.{base}"
        # consistent snapshots (the repository's root always sets them): files by hash
        custom = info.unrecognized_fields.get("custom")
        chunks = _chunks_of(custom if isinstance(custom, dict) else {}, length)
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.parent / f"{digest}.part"
        for stale in out.parent.glob("*.part"):  # one download at a time is resumable
            if stale != part:
                stale.unlink(missing_ok=True)
        have = _good_prefix(part, chunks, length)
        if have < length or length == 0:
            self._fetch_rest(url, info, part, have, chunks)
        data = part.read_bytes()
        try:
            info.verify_length_and_hashes(data)
        except Exception as e:
            part.unlink(missing_ok=True)
            raise UpdateError(
                f"target {info.path!r} refused: length or hash differs from signed metadata ({e})"
            ) from e
        os.replace(part, out)

    def _fetch_rest(
        self,
        url: str,
        info: Any,
        part: Path,
        have: int,
        chunks: tuple[int, list[str]] | None,
    ) -> None:
        """Append the target's bytes from ``have`` on to ``part`` (Range; restart on 200)."""
        assert isinstance(self.fetcher, HttpxFetcher)
        length = int(info.length)
        resp = self.fetcher.open_range(url, have)
        try:
            if resp.status_code == 416 or (have and resp.status_code != 206):
                have = 0  # the server ignored the range or refused it: from the start
                if resp.status_code == 416:
                    resp.close()
                    resp = self.fetcher.open_range(url, 0)
            elif have:
                start = resp.headers.get("content-range", "").removeprefix("bytes ").split("-")[0]
                if start != str(have):
                    raise UpdateError(f"GET {url}: answered range {start!r}, asked {have}")
            with open(part, "r+b" if have else "wb") as f:
                f.truncate(have)
                f.seek(have)
                pos = have
                try:
                    for block in resp.iter_bytes():  # as it arrives: nothing buffered is lost
                        if pos + len(block) > length:
                            raise UpdateError(
                                f"target {info.path!r}: download larger than allowed (endless "
                                f"data): more than the signed {length} bytes"
                            )
                        f.write(block)
                        if chunks is not None:
                            _check_chunks(f, chunks, pos, pos + len(block), length)
                        pos += len(block)
                except httpx.HTTPError as e:
                    raise UpdateError(
                        f"download of {info.path!r} broke off at {pos} of {length} bytes "
                        f"({type(e).__name__}: {e}); the next attempt resumes there"
                    ) from e
                f.flush()
                os.fsync(f.fileno())
        finally:
            resp.close()
        if pos < length:
            raise UpdateError(
                f"download of {info.path!r} ended at {pos} of {length} bytes; the next attempt "
                "resumes there"
            )

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


def _good_prefix(part: Path, chunks: tuple[int, list[str]] | None, length: int) -> int:
    """How much of a partial download to keep: nothing if it is longer than the target; with
    a signed chunk list, up to its first whole chunk that does not match; else all of it."""
    try:
        size = part.stat().st_size
    except OSError:
        return 0
    if size > length:
        return 0
    if chunks is None:
        return size
    step, hashes = chunks
    with open(part, "rb") as f:
        for i in range(size // step):
            if hashlib.sha256(f.read(step)).hexdigest() != hashes[i]:
                return i * step
    return size  # the unfinished last chunk is checked when the resumed download completes it


def _check_chunks(f: Any, chunks: tuple[int, list[str]], start: int, end: int, length: int) -> None:
    """Check each chunk that the bytes ``start..end`` just written completed."""
    step, hashes = chunks
    for i in range(start // step, (end - 1) // step + 1):
        lo, hi = i * step, min((i + 1) * step, length)
        if hi > end:
            break
        if hi <= start:
            continue
        f.flush()
        with open(f.name, "rb") as r:
            r.seek(lo)
            if hashlib.sha256(r.read(hi - lo)).hexdigest() != hashes[i]:
                f.truncate(lo)
                raise UpdateError(
                    f"chunk {i} (bytes {lo}..{hi}): length or hash differs from the signed "
                    "chunk list; dropped, the next attempt fetches it again"
                )


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
