"""Where an admin client finds its server and its admin token (flags, environment, data dir)."""

from __future__ import annotations

import os
from pathlib import Path

from edgeloop._io import default_data_dir
from edgeloop.errors import AuthError

__all__ = ["DEFAULT_SERVER", "read_admin_token", "server_url"]

DEFAULT_SERVER = "http://127.0.0.1:8700"


def server_url(*candidates: str | None) -> str:
    """The first given of ``candidates``, else ``$EDGELOOP_SERVER``, else the local default."""
    given = next((c for c in candidates if c), None)
    url = given or os.environ.get("EDGELOOP_SERVER") or DEFAULT_SERVER
    return str(url).rstrip("/")


def read_admin_token(token_file: Path | None = None, data: Path | None = None) -> str:
    """``token_file``'s content, else ``$EDGELOOP_ADMIN_TOKEN``, else ``DATA/admin-token``.

    ``data`` is the server's data dir (default ``$EDGELOOP_DATA`` or the user data dir).
    """
    path = token_file
    if path is None:
        env = os.environ.get("EDGELOOP_ADMIN_TOKEN")
        if env:
            return env.strip()
        path = (data or default_data_dir()) / "admin-token"
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise AuthError(
            f"cannot read the admin token from {str(path)!r} ({e.strerror or e}); pass "
            "--admin-token-file or set $EDGELOOP_ADMIN_TOKEN"
        ) from e
