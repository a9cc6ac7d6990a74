"""Render a closed-loop demo's report.html and screenshot it in headless Chromium.

    python tools/loop_report_screenshot.py edgeloop-demo/demo.json --out docs/img/loop-report.png

Renders ``report.html`` beside ``demo.json`` (``edgeloop.demo._loop_report``), opens it in
Debian's ``/usr/bin/chromium`` under Playwright (as the report's browser test does), waits until
every plot has loaded and writes a full-page PNG (a temp file beside ``--out``, then renamed).
Needs ``playwright`` and ``chromium`` (``apt install chromium``); exits 2 naming what is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def screenshot(demo_json: Path, out: Path, width: int = 1100) -> Path:
    """Write ``out``: the full page of the report rendered from ``demo_json``."""
    from playwright.sync_api import sync_playwright

    from edgeloop.demo._loop_report import write_loop_report

    page_file = write_loop_report(demo_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            try:
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(page_file.resolve().as_uri())
                page.wait_for_function(
                    "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
                )
                page.screenshot(path=tmp, full_page=True)
            finally:
                browser.close()
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo_json", type=Path, help="the demo's demo.json (edgeloop-demo/demo.json)")
    ap.add_argument("--out", type=Path, default=Path("docs/img/loop-report.png"))
    ap.add_argument("--width", type=int, default=1100, help="viewport width in pixels")
    args = ap.parse_args(argv)
    if not args.demo_json.is_file():
        print(f"demo.json {str(args.demo_json)!r}: not a file (run `edgeloop demo` "
              "first)", file=sys.stderr)
        return 2
    if not 320 <= args.width <= 4000:
        print(f"--width {args.width}: expected 320..4000 pixels", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: apt install chromium", file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("playwright is not installed: pip install playwright", file=sys.stderr)
        return 2
    from edgeloop.errors import EdgeloopError

    try:
        out = screenshot(args.demo_json, args.out, args.width)
    except EdgeloopError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
