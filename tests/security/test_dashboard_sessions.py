"""Point 8 of issue 13: the dashboard cookie was a fixed HMAC of the admin token (never expired,
survived sign-out, no ``Secure``, no throttling). Sessions now live on the server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from edgeloop.fleet import FleetSettings, create_app
from live_fleet import LiveServer

COOKIE = "edgeloop_dashboard"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("dash")).start()
    try:
        yield live
    finally:
        live.stop()


def _token(server: LiveServer) -> str:
    return (server.data / "admin-token").read_text().strip()


def _sign_in(server: LiveServer, token: str | None = None) -> httpx.Response:
    return httpx.post(server.url + "/dashboard/login", data={"token": token or _token(server)})


def _page(server: LiveServer, cookie: str) -> httpx.Response:
    return httpx.get(server.url + "/dashboard", cookies={COOKIE: cookie})


@pytest.mark.slow
def test_each_sign_in_gets_its_own_random_session_stored_only_as_a_hash(server):
    first, second = _sign_in(server), _sign_in(server)
    a, b = first.cookies[COOKIE], second.cookies[COOKIE]
    assert a != b and len(a) >= 40
    header = first.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header and "max-age=28800" in header
    assert "secure" not in header  # plain HTTP: a Secure cookie would never come back
    stored = {r[0] for r in server.rows("SELECT token_sha256 FROM fleet_dashboard_sessions")}
    assert hashlib.sha256(a.encode()).hexdigest() in stored
    assert a not in stored and _token(server) not in str(stored)
    assert _page(server, a).status_code == 200


@pytest.mark.slow
def test_sign_out_ends_the_session_for_good(server):
    cookie = _sign_in(server).cookies[COOKIE]
    assert _page(server, cookie).status_code == 200

    httpx.post(server.url + "/dashboard/logout", cookies={COOKIE: cookie})

    again = _page(server, cookie)
    assert again.status_code == 303 and again.headers["location"] == "/dashboard/login"
    digest = hashlib.sha256(cookie.encode()).hexdigest()
    assert not server.rows(
        "SELECT 1 FROM fleet_dashboard_sessions WHERE token_sha256 = :d", d=digest
    )


@pytest.mark.slow
def test_an_expired_session_is_refused(server):
    import sqlalchemy as sa

    cookie = _sign_in(server).cookies[COOKIE]
    engine = sa.create_engine(server.db)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "UPDATE fleet_dashboard_sessions SET expires_at = '2000-01-01 00:00:00.000000' "
                "WHERE token_sha256 = :d"
            ),
            {"d": hashlib.sha256(cookie.encode()).hexdigest()},
        )
    engine.dispose()
    assert _page(server, cookie).status_code == 303


@pytest.mark.slow
def test_the_old_fixed_cookie_no_longer_opens_the_dashboard(server):
    import hmac

    old = hmac.new(
        _token(server).encode(), b"edgeloop-dashboard-session", hashlib.sha256
    ).hexdigest()
    assert _page(server, old).status_code == 303


@pytest.mark.slow
def test_a_form_needs_its_own_sessions_csrf_value(server):
    cookie = _sign_in(server).cookies[COOKIE]
    r = httpx.post(
        server.url + "/dashboard/rollouts/1/pause",
        data={"csrf": "guessed"},
        cookies={COOKIE: cookie},
    )
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]


@pytest.mark.slow
def test_failed_sign_ins_are_throttled_per_client(tmp_path):
    live = LiveServer(tmp_path).start()
    try:
        for _ in range(5):
            r = _sign_in(live, "wrong-token-0123456789")
            assert r.status_code == 303 and "error=1" in r.headers["location"]
        before = live.snapshot()

        refused = _sign_in(live)  # even the right token: the client is locked out for now

        assert refused.status_code == 429
        assert "too many failed sign-ins from 127.0.0.1" in refused.json()["detail"]
        assert COOKIE not in refused.cookies
        assert live.snapshot() == before
        assert "Traceback" not in live.output
    finally:
        live.stop()


def test_the_cookie_is_secure_when_the_server_speaks_tls(tmp_path: Path):
    settings = FleetSettings(
        db_url=f"sqlite:///{tmp_path / 'f.db'}", data_dir=tmp_path / "d", create_release_keys=True
    )
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        token = settings.admin_token_path.read_text().strip()
        r = client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert "secure" in r.headers["set-cookie"].lower()
