"""The admin client's one mapping from HTTP answers to the error tree."""

from __future__ import annotations

import pytest

from _live import refused_port
from edgeloop.client import AdminClient, RolloutClient, error_for
from edgeloop.errors import AuthError, FleetError, RolloutError


@pytest.mark.parametrize(
    ("path", "status", "cls"),
    [
        ("/v1/admin/devices", 401, AuthError),
        ("/v1/admin/rollouts/3/pause", 403, AuthError),
        ("/v1/admin/rollouts/3", 404, RolloutError),
        ("/v1/admin/rollouts/3/resume", 409, RolloutError),
        ("/v1/admin/rollouts", 400, FleetError),
        ("/v1/admin/devices/d1", 404, FleetError),
        ("/v1/admin/releases", 409, FleetError),
        ("/v1/admin/releases", 500, FleetError),
    ],
)
def test_status_maps_to_one_error_class(path: str, status: int, cls: type[Exception]) -> None:
    err = error_for("POST", path, status, "the reason")

    assert type(err) is cls
    assert str(err) == f"POST {path} -> {status}: the reason"


def test_an_unreachable_server_is_a_fleet_error_naming_it() -> None:
    with refused_port() as port:  # bound, not listening: no other server can take it
        url = f"http://127.0.0.1:{port}"

        with pytest.raises(FleetError, match=f"cannot reach the fleet server at {url}"):
            AdminClient(url, "token", timeout_s=5).devices()
        with pytest.raises(FleetError, match=f"cannot reach the fleet server at {url}"):
            RolloutClient(url, "token", timeout_s=5).list()
