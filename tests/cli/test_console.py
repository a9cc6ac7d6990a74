"""Output that is redirected (not a terminal) keeps table cells whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_redirected_table_keeps_cells_whole() -> None:
    from edgeloop.hardware import list_targets, load_target

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run(
        [sys.executable, "-m", "edgeloop", "targets"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )

    assert r.returncode == 0, r.stderr
    for name in list_targets():
        p = load_target(name)
        row = next(line for line in r.stdout.splitlines() if f" {p.name} " in line)
        assert p.cpu_model in row  # rich at 80 columns folded it over several lines
        assert " ".join(p.isa) in row


def test_error_inside_a_transient_progress_bar_is_the_first_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "edgeloop", "optimize", str(tmp_path / "nope.onnx"),
         "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert r.returncode == 11, r.stderr
    assert r.stderr.splitlines() == [f"error: model {str(tmp_path / 'nope.onnx')!r} does not exist"]
