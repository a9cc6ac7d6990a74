"""``edgeloop fleet`` admin verbs: errors say what is wrong before or without a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.fleet import app
from edgeloop.errors import AuthError, FleetError, InputError


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-token"
    path.write_text("t" * 43 + "\n")
    return path


def _run(*args: str) -> object:
    return CliRunner().invoke(app, list(args)).exception


def test_an_unreachable_server_is_a_fleet_error_naming_it(token_file: Path) -> None:
    err = _run("--server", "http://127.0.0.1:9", "--admin-token-file", str(token_file), "devices")
    assert isinstance(
        err, FleetError
    ) and "cannot reach the fleet server at http://127.0.0.1:9" in str(err)


def test_a_missing_token_file_is_an_auth_error(tmp_path: Path) -> None:
    err = _run("--admin-token-file", str(tmp_path / "nope"), "devices")
    assert isinstance(err, AuthError) and "cannot read the admin token" in str(err)


def test_bad_references_and_labels_are_refused_before_any_request(token_file: Path) -> None:
    base = ("--server", "http://127.0.0.1:9", "--admin-token-file", str(token_file))
    err = _run(*base, "publish", "kws")
    assert isinstance(err, InputError) and "expected MODEL@VERSION" in str(err)
    err = _run(*base, "token", "--label", "novalue")
    assert isinstance(err, InputError) and "expected KEY=VALUE" in str(err)
