"""Dashboard sessions on the server, and sign-in throttling, inside the caller's transaction.

A sign-in creates a random session token (the cookie) and a random CSRF value; the database
keeps only the token's sha256, with an expiry, so a leaked database does not hand out sessions
and sign-out (or expiry) ends a session for good. Before this, the cookie was a fixed HMAC of
the admin token: it never expired and survived sign-out.

Failed sign-ins are recorded by client address; a client with ``max_failures`` within
``window`` is refused (429) before its token is even compared, so the admin token cannot be
guessed at line rate. A successful sign-in does not clear the record (an attacker who also
holds a valid token gains nothing from it), the window does.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgeloop.db import DashboardSessionRow, LoginFailureRow

__all__ = [
    "SessionPolicy",
    "end_session",
    "find_session",
    "record_login_failure",
    "start_session",
    "throttled",
]


@dataclass(frozen=True)
class SessionPolicy:
    ttl: timedelta = timedelta(hours=8)
    max_failures: int = 5
    window: timedelta = timedelta(minutes=5)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(s: Session, now: datetime, policy: SessionPolicy) -> tuple[str, str]:
    """A new session: ``(cookie token, CSRF value)``; expired sessions are swept meanwhile."""
    s.execute(sa.delete(DashboardSessionRow).where(DashboardSessionRow.expires_at <= now))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    s.add(
        DashboardSessionRow(
            token_sha256=_digest(token), csrf=csrf, created_at=now, expires_at=now + policy.ttl
        )
    )
    return token, csrf


def find_session(s: Session, token: str, now: datetime) -> str | None:
    """The CSRF value of the live session ``token`` names; None when none (or expired)."""
    if not token:
        return None
    row = s.get(DashboardSessionRow, _digest(token))
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=now.tzinfo)
    return row.csrf if expires > now else None


def end_session(s: Session, token: str) -> None:
    if token:
        s.execute(
            sa.delete(DashboardSessionRow).where(DashboardSessionRow.token_sha256 == _digest(token))
        )


def throttled(s: Session, client: str, now: datetime, policy: SessionPolicy) -> bool:
    """Whether ``client`` failed to sign in ``max_failures`` times within the window."""
    since = now - policy.window
    count = s.scalar(
        sa.select(sa.func.count())
        .select_from(LoginFailureRow)
        .where(LoginFailureRow.client == client, LoginFailureRow.at > since)
    )
    return int(count or 0) >= policy.max_failures


def record_login_failure(s: Session, client: str, now: datetime, policy: SessionPolicy) -> None:
    s.execute(sa.delete(LoginFailureRow).where(LoginFailureRow.at <= now - policy.window))
    s.add(LoginFailureRow(client=client[:64], at=now))
