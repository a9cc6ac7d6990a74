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
                "drift_series": {
                    "region=north": [
                        {"t_s": 5.0, "version": 1, "psi": {"pc0": 0.01, "pc1": 0.02},
                         "drifted": []},
                        {"t_s": 21.0, "version": 1, "psi": {"pc0": 0.9, "pc1": 2.5},
                         "drifted": ["pc1"]},
                        {"t_s": 85.0, "version": 3, "psi": {"pc0": 0.02, "pc1": 0.03},
                         "drifted": []},
                    ],
                    "region=south": [
                        {"t_s": 21.0, "version": 1, "psi": {"pc0": 0.01, "pc1": 0.0},
                         "drifted": []},
                    ],
                },
                "alerts": {"region=north": ["pc1", "@confidence"]},
                "lineage": {
                    "role": "version", "sha256": "ab" * 32, "kind": "version",
                    "model": "digits", "version": 3, "children": [
                        {"role": "parent_version", "sha256": "cd" * 32, "kind": "version",
                         "model": "digits", "version": 1, "children": [
                             {"role": "dataset", "sha256": "95f5ab11" * 8, "kind": "unknown",
                              "name": "digits", "children": []},
                         ]},
                        {"role": "monitor_alert", "sha256": "ef" * 32, "kind": "unknown",
                         "name": "alert event 7 (job 2, cohort region=north)", "children": []},
                    ],
                },
                "delta": {"base_version": 1, "target_version": 3, "delta_bytes": 7000,
                          "metadata_bytes": 1500, "payload_bytes": 5500,
                          "literal_model_bytes": 2900},
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
    assert set(uris) == {"timeline", "accuracy", "drift", "bytes"}
    for b64 in uris.values():
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 100 and height > 100
    assert "drift alert event 7" in page and "base v1 of digits" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # recorded text is escaped
    assert "75.0" in page and "alert raised" in page
    # the lineage walked back to the training data: the data set's name and sha256
    assert "<b class='dataset'>digits</b>" in page and "95f5ab11" * 8 in page
    assert "alert event 7 (job 2, cohort region=north)" in page
    assert "literal model bytes</th><td>2900" in page  # where the delta's bytes go


def test_the_drift_plot_draws_every_cohort_it_was_given() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeloop.demo._loop_report import _drift_plot

    healed = DEMO["steps"][2]["figures"]
    before = set(plt.get_fignums())
    shown: list[Any] = []
    real = plt.close
    try:
        plt.close = lambda fig: shown.append(fig)  # keep the figure to look at it
        _drift_plot(plt, healed, 9.0)
    finally:
        plt.close = real
    (fig,) = shown
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["region=north: alert on pc1, @confidence", "region=south: no alert"]
    real(fig)
    assert set(plt.get_fignums()) == before


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
    assert {s[0] for s in sizes} == {"plot-timeline", "plot-accuracy", "plot-drift", "plot-bytes"}
    assert all(done and w > 0 and h > 0 for _, done, w, h in sizes), sizes
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 0


TOOL = Path(__file__).resolve().parents[2] / "tools" / "loop_report_screenshot.py"


@pytest.mark.browser
def test_the_screenshot_tool_writes_the_full_page(tmp_path: Path, browser: Any) -> None:
    import subprocess
    import sys

    src = tmp_path / "demo.json"
    src.write_text(json.dumps(DEMO))
    out = tmp_path / "img" / "loop-report.png"
    run = subprocess.run([sys.executable, str(TOOL), str(src), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 1100 and height > 900  # the full page, longer than the viewport
    assert sorted(p.name for p in out.parent.iterdir()) == ["loop-report.png"]  # no temp left


def test_the_screenshot_tool_refuses_a_missing_demo(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "nope.json"), "--out",
                          str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "nope.json" in run.stderr and "not a file" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
