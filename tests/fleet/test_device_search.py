"""The admin API's filtered device list (what the dashboard's list uses), the client's
``find_devices`` and ``edgeloop fleet devices --state ...``: filters, pages, counts, 400s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from edgeloop.cli.fleet import app
from edgeloop.errors import InputError

FP32: dict[str, dict[str, Any]] = {"fp32": {}}


def test_filters_pages_and_counts_over_the_admin_api(sqlite_fleet: Any) -> None:
    fleet = sqlite_fleet
    fleet.release("kws", 1, FP32)
    eu = [fleet.device("arm", model="kws", labels={"region": "eu"}) for _ in range(3)]
    us = [fleet.device("vnni", model="kws", labels={"region": "us"}) for _ in range(2)]
    installed = {"model": "kws", "version": 1, "variant": "fp32", "sha256": "0" * 64}
    for d in eu[:2]:
        assert d.checkin(installed).status_code == 200
    assert us[0].checkin(None, health="failing").status_code == 200
    get = fleet.client.get
    r = get("/v1/admin/devices", params={"state": "ok"}, headers=fleet.admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matched"] == 2 and {d["device_id"] for d in body["devices"]} == {
        d.device_id for d in eu[:2]
    }
    assert all(d["state"] == "ok" and d["online"] for d in body["devices"])
    assert body["total"] == 5
    assert body["counts"]["state"] == {"ok": 2, "failing": 1, "unknown": 2}
    assert body["counts"]["version"] == {"kws@1": 2, "none": 3}
    r = get(
        "/v1/admin/devices",
        params={"label": "region=us", "per_page": 1, "page": 2},
        headers=fleet.admin,
    )
    assert (r.json()["matched"], r.json()["pages"], len(r.json()["devices"])) == (2, 2, 1)
    r = get("/v1/admin/devices", params={"version": "none", "seen": "<1h"}, headers=fleet.admin)
    assert r.json()["matched"] == 3  # two enrolled only, one checked in without a model
    r = get("/v1/admin/devices", params={"seen": ">1h"}, headers=fleet.admin)
    assert r.json()["matched"] == 0
    assert len(get("/v1/admin/devices", headers=fleet.admin).json()["devices"]) == 5
    for params, named in [
        ({"state": "sleepy"}, "state 'sleepy'"),
        ({"page": "0"}, "page '0'"),
        ({"seen": "1d"}, "seen '1d'"),
        ({"label": "region"}, "label 'region'"),
        ({"hardware": "arm\x00"}, "expected text without control characters"),
    ]:
        bad = get("/v1/admin/devices", params=params, headers=fleet.admin)
        assert bad.status_code == 400 and named in bad.json()["detail"], bad.text


def test_the_cli_refuses_bad_paging_before_any_request(tmp_path: Path) -> None:
    token = tmp_path / "admin-token"
    token.write_text("t" * 43 + "\n")
    base = ["--server", "http://127.0.0.1:9", "--admin-token-file", str(token), "devices"]
    for args, named in [
        (["--per-page", "0"], "--per-page 0"),
        (["--page", "0"], "--page 0"),
        (["--label", "region"], "--label 'region'"),
    ]:
        err = CliRunner().invoke(app, base + args).exception
        assert isinstance(err, InputError) and named in str(err), (args, err)
