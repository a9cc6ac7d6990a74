"""Fixtures for the update channel: keys, a repository, bundles, and two ways to serve it.

``server`` is a loopback ``http.server`` over the repository directory that an attacker can
tamper with (``server.overrides[url_path] = bytes``); ``memory_fetcher`` serves the same files
to python-tuf without a socket. Tests that take ``fetcher_kind`` run on both.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface

from edgeloop.artifacts import ModelCard
from edgeloop.bundle import load_encryption_key, load_signing_key, pack
from edgeloop.update import HttpxFetcher, KeyRing, Repository, UpdateClient, init_keys
from onnx_writer import FLOAT, model_bytes


def make_model(seed: int) -> bytes:
    w = np.random.default_rng(seed).standard_normal((4, 2)).astype(np.float32)
    return model_bytes(
        [("MatMul", ["x", "W"], ["y"])],
        [("x", FLOAT, ["N", 4])],
        [("y", FLOAT, ["N", 2])],
        {"W": w},
    )


@pytest.fixture(scope="session")
def model_factory() -> Callable[[int], bytes]:
    return make_model


@pytest.fixture(scope="session")
def keys_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys-template") / "keys"
    init_keys(d, threshold=2, root_keys=3)
    return d


@pytest.fixture
def keys(tmp_path: Path, keys_template: Path) -> KeyRing:
    """A fresh copy per test, so rotations do not leak between tests."""
    d = tmp_path / "keys"
    shutil.copytree(keys_template, d)
    return KeyRing(d)


@pytest.fixture
def make_bundle(tmp_path: Path, keys: KeyRing) -> Callable[[int], Path]:
    """``make_bundle(version)`` packs a model as tiny-VERSION.elb, encrypted to the fleet key."""

    def _make(version: int) -> Path:
        key = load_signing_key(keys.dir / "release.pem")
        fleet = load_encryption_key(keys.dir / "fleet.pem").public_key()
        data = pack(make_model(version), ModelCard(name="tiny", sha256=""), version, key, [fleet])
        p = tmp_path / "out" / f"tiny-{version}.elb"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        return p

    return _make


@pytest.fixture
def repo(tmp_path: Path, keys: KeyRing) -> Repository:
    return Repository(tmp_path / "repo", keys)


class TamperingServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.overrides: dict[str, bytes] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, directory=str(outer.root), **kw)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.requests.append(self.path)
                body = outer.overrides.get(self.path)
                if body is None:
                    super().do_GET()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(repo: Repository) -> Iterator[TamperingServer]:
    s = TamperingServer(repo.dir)
    yield s
    s.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Path], TamperingServer]]:
    """``serve(directory)`` starts a loopback server over any directory (closed at teardown)."""
    started: list[TamperingServer] = []

    def _serve(root: Path) -> TamperingServer:
        started.append(TamperingServer(root))
        return started[-1]

    yield _serve
    for s in started:
        s.close()


class MemoryFetcher(FetcherInterface):
    """Serves the repository's files (and overrides) straight from disk, no socket."""

    def __init__(self, base_url: str, root: Path, overrides: dict[str, bytes]) -> None:
        self.base_url, self.root, self.overrides = base_url, root, overrides

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = url.removeprefix(self.base_url)
        if path in self.overrides:
            return iter([self.overrides[path]])
        f = self.root / path.lstrip("/")
        if not f.is_file():
            raise DownloadHTTPError(f"{url}: not found", 404)
        return iter([f.read_bytes()])


@pytest.fixture(params=["http", "memory"])
def fetcher_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client_factory(
    tmp_path: Path, keys: KeyRing, server: TamperingServer, fetcher_kind: str
) -> Callable[..., UpdateClient]:
    """A device: the original root.json (copied before any rotation) and its own state dir."""
    root = keys.root_bytes()

    def _client(name: str = "device", kind: str | None = None) -> UpdateClient:
        k = kind or fetcher_kind
        fetcher: FetcherInterface = (
            HttpxFetcher()
            if k == "http"
            else MemoryFetcher(server.url, server.root, server.overrides)
        )
        return UpdateClient(server.url, root, tmp_path / name / "metadata", fetcher=fetcher)

    return _client
