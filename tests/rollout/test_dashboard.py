"""The dashboard in real headless Chromium: sign in, overview, a rollout's charts, pause."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from edgeloop.artifacts import RolloutPlan
from edgeloop.db import write_session
from edgeloop.fleet import _rollout_store as rs
from edgeloop.fleet._gates import GateOptions


def _rollout_with_checks(db):
    """40 devices, a rollout soaking at 10 % for a long soak, a minute of gate checks."""
    start = datetime.now(timezone.utc) - timedelta(seconds=60)

    def at(seconds):
        return start + timedelta(seconds=seconds)

    db.add_devices(30, arch="aarch64", region="eu")
    db.add_devices(10, arch="x86_64", region="us")
    plan = RolloutPlan(
        model="kws",
        version=2,
        stages=(10.0, 100.0),
        soak_s=86400.0 * 365,
        gates=("error_rate<0.05", "p99_ms<=1.5*baseline"),
    )
    with write_session(db.engine) as s:
        row = rs.start_rollout(
            s,
            plan,
            alias="production",
            now=at(0),
            options=GateOptions(min_devices=2, min_requests=50),
        )
        rid, salt, cut = row.id, row.salt, row.cut
    from edgeloop.fleet._canary import device_hash

    db.install([d for d in db.versions() if device_hash(salt, d) <= cut], 2)
    for t in range(5, 56, 5):
        db.report(at(t))
        with write_session(db.engine) as s:
            rs.drive(s, at(t))
    return rid


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_pages_charts_and_pause(rollout_db, live_app, browser, tmp_path):
    rid = _rollout_with_checks(rollout_db)
    url, token = live_app
    # without the cookie, pages send the browser to the login form
    r = httpx.get(url + "/dashboard", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url + "/dashboard")
    page.fill("#token", "not-the-token")
    page.click("#sign-in")
    # the redirect lands before the page has painted: wait for the element, do not poll once
    page.wait_for_url("**/dashboard/login?error=1")
    page.locator("#login-error").wait_for(state="visible", timeout=10_000)
    assert page.locator("#login-error").is_visible()
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_selector("#device-total")
    assert page.inner_text("#device-total") == "40"
    assert "kws@1" in page.inner_text("#by-version") and "kws@2" in page.inner_text("#by-version")
    assert "rpi4" in page.inner_text("#by-hardware")
    cookie = next(c for c in page.context.cookies() if c["name"] == "edgeloop_dashboard")
    assert cookie["httpOnly"] and token not in cookie["value"]
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

    page.click(f"#rollouts a[href='/dashboard/rollouts/{rid}']")
    page.wait_for_selector("#rollout-state")
    assert page.inner_text("#rollout-state") == "soaking"
    for gate in ("error_rate<0.05", "p99_ms<=1.5*baseline"):
        figure = page.locator(f"figure[data-gate='{gate}']")
        assert figure.locator("svg.chart").count() == 1
        # stage and control plotted, one point per check each
        assert figure.locator("circle.pt.treatment").count() >= 4
        assert figure.locator("circle.pt.control").count() >= 4
        box = figure.locator("svg.chart").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
    assert "soak" in page.inner_text("#timeline")
    page.screenshot(path=str(tmp_path / "rollout.png"), full_page=True)

    page.click("#pause")
    page.wait_for_selector("#resume")
    assert page.inner_text("#rollout-state") == "paused"
    assert "pause from the dashboard" in page.inner_text("#timeline")
    api = httpx.get(
        f"{url}/v1/admin/rollouts/{rid}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert api["state"] == "paused" and api["events"][-1]["actor"] == "dashboard"

    device = sorted(rollout_db.versions())[0]
    page.goto(f"{url}/dashboard/devices/{device}")
    assert device in page.inner_text("#device-info")
    assert page.locator("svg.chart circle.pt").count() >= 5
    page.screenshot(path=str(tmp_path / "device.png"), full_page=True)


def test_dashboard_refuses_forms_without_csrf(rollout_db, live_app):
    rid = _rollout_with_checks(rollout_db)
    url, token = live_app
    with httpx.Client(base_url=url) as c:
        r = c.post("/dashboard/login", data={"token": token}, follow_redirects=False)
        assert r.status_code == 303 and "edgeloop_dashboard" in r.headers["set-cookie"]
        assert "httponly" in r.headers["set-cookie"].lower()
        r = c.post(f"/dashboard/rollouts/{rid}/pause", data={"csrf": "forged"})
        assert r.status_code == 403
        r = c.get(f"/dashboard/rollouts/{rid}")
        assert r.status_code == 200 and 'id="rollout-state">soaking<' in r.text


def _signed_in(url, token):
    c = httpx.Client(base_url=url)
    r = c.post("/dashboard/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303
    return c


def _csrf(html):
    import re

    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m is not None
    return m.group(1)


def test_the_rollout_page_shows_and_changes_the_operator_controls(rollout_db, live_app):
    rid = _rollout_with_checks(rollout_db)  # started without controls
    url, token = live_app
    admin = {"Authorization": f"Bearer {token}"}
    c = _signed_in(url, token)
    try:
        page = c.get(f"/dashboard/rollouts/{rid}").text
        assert "controls: none" in page and 'id="controls-form"' in page
        form = {
            "csrf": _csrf(page), "max_per_minute": "5", "max_concurrent_downloads": "20",
            "download_timeout_s": "900", "window": "02:00-05:00", "window_label": "utc_offset",
            "window_offset": "+01:00", "max_failures": "3", "max_failure_rate": "10",
        }  # fmt: skip
        r = c.post(f"/dashboard/rollouts/{rid}/controls", data=form, follow_redirects=False)
        assert r.status_code == 303, r.text
        page = c.get(f"/dashboard/rollouts/{rid}").text
        shown = page.split('id="rollout-controls">')[1].split("</p>")[0]
        for text in ("at most 5 device(s) per minute", "at most 20 downloading at once",
                     "window 02:00-05:00 device-local", "UTC+01:00",
                     "roll back above 3 failed device(s)", "roll back above 10% of the stage"):
            assert text in shown, (text, shown)  # fmt: skip
        api = httpx.get(f"{url}/v1/admin/rollouts/{rid}", headers=admin).json()
        assert api["controls"]["max_per_minute"] == 5
        assert api["controls"]["max_failure_rate"] == pytest.approx(0.1)
        assert api["events"][-1]["kind"] == "controls" and api["events"][-1]["actor"] == "dashboard"
        assert "max_per_minute None -> 5" in api["events"][-1]["reason"]
        assert api["state"] == "soaking"  # changing the controls moves nothing else

        # an empty field turns that control off; a bad value is a 400 naming it, nothing stored
        form.update(csrf=_csrf(page), max_per_minute="", window="")
        r = c.post(f"/dashboard/rollouts/{rid}/controls", data=form, follow_redirects=False)
        assert r.status_code == 303
        api = httpx.get(f"{url}/v1/admin/rollouts/{rid}", headers=admin).json()
        kept = api["controls"]
        assert kept.get("max_per_minute") is None and kept.get("window") is None
        assert api["controls"]["max_concurrent_downloads"] == 20
        revision = api["revision"]
        for field, bad in (("max_failures", "-1"), ("max_failure_rate", "nan"),
                           ("window", "25:00-26:00"), ("max_per_minute", "1e3")):
            r = c.post(
                f"/dashboard/rollouts/{rid}/controls", data={**form, field: bad},
                follow_redirects=False,
            )  # fmt: skip
            assert r.status_code == 400 and field in r.json()["detail"], (field, r.text)
        r = c.post(f"/dashboard/rollouts/{rid}/controls", data={**form, "csrf": "forged"})
        assert r.status_code == 403
        api = httpx.get(f"{url}/v1/admin/rollouts/{rid}", headers=admin).json()
        assert api["revision"] == revision
    finally:
        c.close()


def test_the_admin_api_and_the_cli_change_a_rollouts_controls(rollout_db, live_app):
    from typer.testing import CliRunner

    from edgeloop.cli.app import app as cli

    rid = _rollout_with_checks(rollout_db)
    url, token = live_app
    admin = {"Authorization": f"Bearer {token}"}
    r = httpx.put(
        f"{url}/v1/admin/rollouts/{rid}/controls", json={"max_per_minute": 7, "reason": "night"},
        headers=admin,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["controls"]["max_per_minute"] == 7 and got["events"][-1]["reason"] == "night"
    for body, status in (({"max_per_minute": 0}, 400), ({"speed": 1}, 400),
                         ({"window": "x"}, 400), ({"max_per_minute": 1}, 401)):
        headers = {} if status == 401 else admin
        r = httpx.put(f"{url}/v1/admin/rollouts/{rid}/controls", json=body, headers=headers)
        assert r.status_code == status, (body, r.text)  # fmt: skip
    r = httpx.put(f"{url}/v1/admin/rollouts/999/controls", json={}, headers=admin)
    assert r.status_code == 404

    env = {"EDGELOOP_ADMIN_TOKEN": token}
    run = CliRunner().invoke(
        cli, ["rollout", "--server", url, "controls", str(rid), "--max-failures", "4",
              "--off", "max-per-minute", "--json"], env=env,
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    api = httpx.get(f"{url}/v1/admin/rollouts/{rid}", headers=admin).json()
    assert api["controls"]["max_failures"] == 4 and api["controls"].get("max_per_minute") is None
    run = CliRunner().invoke(
        cli, ["rollout", "--server", url, "controls", str(rid), "--off", "speed"], env=env
    )
    assert run.exit_code != 0 and "--off 'speed'" in str(run.exception)

    r = httpx.post(f"{url}/v1/admin/rollouts/{rid}/abort", json={}, headers=admin)
    assert r.status_code == 200, r.text
    r = httpx.put(
        f"{url}/v1/admin/rollouts/{rid}/controls", json={"max_failures": 1}, headers=admin
    )
    assert r.status_code == 409 and "no longer apply" in r.json()["detail"]
