"""The closed loop's report.html, rendered from a small recorded demo.json."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from edgeloop.demo._loop_report import render_loop_report, write_loop_report
from edgeloop.errors import InputError

TIMELINE = [
    {"t_s": 0.0, "since_onset_s": None, "event": "fleet serves v1", "devices": 10},
    {"t_s": 5.0, "since_onset_s": None, "event": "baseline", "realized_accuracy": 0.97},
    {"t_s": 9.0, "since_onset_s": 0.0, "event": "drift onset", "cohort": "region=north"},
    {"t_s": 21.0, "since_onset_s": 12.0, "event": "alert raised", "est_accuracy": 0.71},
    {"t_s": 70.0, "since_onset_s": 61.0, "event": "fix rolled out", "version": 3},
    {"t_s": 90.0, "since_onset_s": 81.0, "event": "healed", "realized_accuracy": 0.965},
]
DEMO = {
    "workdir": "/tmp/x",
    "steps": [
        {
            "name": "train",
            "summary": "digits CNN, 3 epochs <script>",
            "seconds": 1.0,
            "figures": {},
        },
        {
            "name": "loop-heal",
            "summary": "healed",
            "seconds": 50.0,
            "figures": {
                "fix": {
                    "version": 3,
                    "job_id": 2,
                    "cohort": "region=north",
                    "event_id": 7,
                    "base_version": 1,
                    "model": "digits",
                    "run_id": "ft-1",
                    "bundle_bytes": 90000,
                }
            },
        },
        {
            "name": "loop-healed",
            "summary": "ok",
            "seconds": 20.0,
            "figures": {
                "timeline": TIMELINE,
                "seconds_onset_to_95pct_healed": 75.0,
                "bytes_per_device": 12000,
                "full_bundle_bytes": 90000,
                "share_of_full_bundle": 0.133,
                "realized_accuracy_before": 0.97,
                "realized_accuracy_after": 0.965,
                "shipped": [
                    {"stage": 0, "percent": 50, "devices": 1, "bytes": 12000},
                    {"stage": 1, "percent": 100, "devices": 1, "bytes": 12000},
                ],
            },
        },
    ],
}


def test_report_has_every_plot_as_a_png_and_the_lineage(tmp_path: Path) -> None:
    src = tmp_path / "demo.json"
    src.write_text(json.dumps(DEMO))
    out = write_loop_report(src)
    assert out == tmp_path / "report.html"
    page = out.read_text()
    uris = dict(re.findall(r"id='plot-(\w+)'[^>]*src='data:image/png;base64,([^']+)'", page))
    assert set(uris) == {"timeline", "accuracy", "bytes"}
    for b64 in uris.values():
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 100 and height > 100
    assert "drift alert event 7" in page and "base v1 of digits" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # recorded text is escaped
    assert "75.0" in page and "alert raised" in page


def test_report_refuses_a_demo_without_the_loop(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no closed-loop timeline"):
        render_loop_report({"steps": [{"name": "train", "summary": "", "seconds": 1}]})
    bad = tmp_path / "demo.json"
    bad.write_text("[1]")
    with pytest.raises(InputError, match="expected a JSON object"):
        write_loop_report(bad)
    assert not (tmp_path / "report.html").exists()


CHROMIUM = "/usr/bin/chromium"  # as tests/rollout/conftest.py's browser fixture


@pytest.fixture
def browser() -> Any:
    """Debian's headless chromium under Playwright (absent: skipped here, a failure in CI)."""
    import os

    reason = "" if Path(CHROMIUM).exists() else f"{CHROMIUM} not found (apt install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "playwright is not installed (pip install playwright)"
    if reason:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI must provide this: {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.mark.browser
def test_report_plots_render_in_chromium(tmp_path: Path, browser: Any) -> None:
    src = tmp_path / "demo.json"
    src.write_text(json.dumps(DEMO))
    out = write_loop_report(src)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(out.as_uri())
    sizes = page.eval_on_selector_all(
        "img.plot", "imgs => imgs.map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert {s[0] for s in sizes} == {"plot-timeline", "plot-accuracy", "plot-bytes"}
    assert all(done and w > 0 and h > 0 for _, done, w, h in sizes), sizes
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 0
