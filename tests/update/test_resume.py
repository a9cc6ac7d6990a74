"""Resumable downloads: a target download that breaks off resumes where it stopped (HTTP
Range), checked chunk by chunk against the signed chunk list; a corrupt partial file is cut
back to its last good chunk; a server that ignores Range still yields the right file."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeloop.artifacts import ModelCard
from edgeloop.bundle import load_encryption_key, load_signing_key, pack
from edgeloop.errors import UpdateError
from edgeloop.update import HttpxFetcher, KeyRing, Repository, UpdateClient
from onnx_writer import FLOAT, model_bytes


class RangeServer:
    """Serves a directory with ``Range: bytes=N-`` support; ``cut[path] = n`` makes the next
    answer for ``path`` stop after ``n`` body bytes (the connection drops)."""

    def __init__(self, root: Path, honour_range: bool = True) -> None:
        self.root, self.honour_range = root, honour_range
        self.cut: dict[str, int] = {}
        self.log: list[tuple[str, str | None, int]] = []  # path, Range header, bytes sent
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                f = outer.root / self.path.lstrip("/")
                if not f.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = f.read_bytes()
                rng = self.headers.get("Range")
                start = 0
                if rng and outer.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                n = outer.cut.pop(self.path, None)
                sent = body if n is None else body[:n]
                self.wfile.write(sent)
                outer.log.append((self.path, rng, len(sent)))
                if n is not None:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def released(tmp_path: Path, keys: KeyRing) -> tuple[Repository, str, bytes]:
    """A 3 MB bundle released with its chunk list (1 MiB chunks)."""
    w = np.random.default_rng(0).standard_normal((750, 1000)).astype(np.float32)
    model = model_bytes(
        [("MatMul", ["x", "W"], ["y"])], [("x", FLOAT, ["N", 750])], [("y", FLOAT, ["N", 1000])],
        {"W": w},
    )  # fmt: skip
    sign = load_signing_key(keys.dir / "release.pem")
    fleet = load_encryption_key(keys.dir / "fleet.pem").public_key()
    bundle = pack(model, ModelCard(name="big", sha256=""), 1, sign, [fleet])
    src = tmp_path / "big-1.elb"
    src.write_bytes(bundle)
    repo = Repository(tmp_path / "repo", keys)
    target = repo.release(src)
    return repo, target.path, bundle


@pytest.fixture
def serve_range() -> Iterator[Any]:
    servers: list[RangeServer] = []

    def _serve(root: Path, honour_range: bool = True) -> RangeServer:
        servers.append(RangeServer(root, honour_range))
        return servers[-1]

    yield _serve
    for s in servers:
        s.close()


def _client(tmp_path: Path, keys: KeyRing, url: str) -> UpdateClient:
    return UpdateClient(url, keys.root_bytes(), tmp_path / "device", fetcher=HttpxFetcher())


def _target_url_path(repo: Repository, path: str) -> str:
    sha = repo.targets()[path].hashes["sha256"]
    d, _, base = path.rpartition("/")
    return f"/targets/{d}/{sha}.{base}"


def test_the_signed_chunk_list_covers_the_target(released: Any) -> None:
    repo, path, bundle = released
    chunks = repo.targets()[path].unrecognized_fields["custom"]["chunks"]
    assert chunks["size"] == 1 << 20 and len(chunks["sha256"]) == -(-len(bundle) // (1 << 20))
    assert chunks["sha256"][0] == hashlib.sha256(bundle[: 1 << 20]).hexdigest()


def test_a_broken_off_download_resumes_where_it_stopped(
    tmp_path: Path, keys: KeyRing, released: Any, serve_range: Any
) -> None:
    repo, path, bundle = released
    server = serve_range(repo.dir)
    url_path = _target_url_path(repo, path)
    server.cut[url_path] = 1_500_000
    dest = tmp_path / "downloads"
    with _client(tmp_path, keys, server.url) as c, pytest.raises(UpdateError, match="resumes"):
        c.fetch_bundle(path, dest)
    part = next(dest.glob("*.part"))
    assert part.stat().st_size == 1_500_000
    with _client(tmp_path, keys, server.url) as c:
        out = c.fetch_bundle(path, dest)
    assert out.read_bytes() == bundle and not list(dest.glob("*.part"))
    target_gets = [(r, n) for p, r, n in server.log if p == url_path]
    assert target_gets == [(None, 1_500_000), ("bytes=1500000-", len(bundle) - 1_500_000)]


def test_a_corrupt_partial_is_cut_back_to_its_last_good_chunk(
    tmp_path: Path, keys: KeyRing, released: Any, serve_range: Any
) -> None:
    repo, path, bundle = released
    server = serve_range(repo.dir)
    url_path = _target_url_path(repo, path)
    server.cut[url_path] = 2_500_000
    dest = tmp_path / "downloads"
    with _client(tmp_path, keys, server.url) as c, pytest.raises(UpdateError):
        c.fetch_bundle(path, dest)
    part = next(dest.glob("*.part"))
    data = bytearray(part.read_bytes())
    data[(1 << 20) + 10] ^= 0xFF  # in the second chunk: the first stays, the rest goes
    part.write_bytes(bytes(data))
    with _client(tmp_path, keys, server.url) as c:
        assert c.fetch_bundle(path, dest).read_bytes() == bundle
    assert [r for p, r, _ in server.log if p == url_path][-1] == f"bytes={1 << 20}-"


def test_a_server_that_ignores_range_still_gives_the_right_file(
    tmp_path: Path, keys: KeyRing, released: Any, serve_range: Any
) -> None:
    repo, path, bundle = released
    server = serve_range(repo.dir, honour_range=False)
    url_path = _target_url_path(repo, path)
    server.cut[url_path] = 700_000
    dest = tmp_path / "downloads"
    with _client(tmp_path, keys, server.url) as c, pytest.raises(UpdateError):
        c.fetch_bundle(path, dest)
    with _client(tmp_path, keys, server.url) as c:
        assert c.fetch_bundle(path, dest).read_bytes() == bundle


def test_a_bad_unfinished_chunk_is_caught_when_the_resume_completes_it(
    tmp_path: Path, keys: KeyRing, released: Any, serve_range: Any
) -> None:
    repo, path, bundle = released
    server = serve_range(repo.dir)
    url_path = _target_url_path(repo, path)
    server.cut[url_path] = 1_500_000
    dest = tmp_path / "downloads"
    with _client(tmp_path, keys, server.url) as c, pytest.raises(UpdateError):
        c.fetch_bundle(path, dest)
    part = next(dest.glob("*.part"))
    data = bytearray(part.read_bytes())
    data[-5] ^= 0xFF  # in the unfinished second chunk
    part.write_bytes(bytes(data))
    with _client(tmp_path, keys, server.url) as c, pytest.raises(UpdateError, match="chunk 1"):
        c.fetch_bundle(path, dest)
    assert part.stat().st_size == 1 << 20  # the bad chunk dropped, the good one kept
    with _client(tmp_path, keys, server.url) as c:
        assert c.fetch_bundle(path, dest).read_bytes() == bundle
