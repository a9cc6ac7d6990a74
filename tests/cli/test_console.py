"""Output that is redirected (not a terminal) keeps table cells whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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
    pytest.importorskip("onnx")  # a device install says optimize needs [train] (test below)
    r = subprocess.run(
        [sys.executable, "-m", "edgeloop", "optimize", str(tmp_path / "nope.onnx"),
         "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert r.returncode == 11, r.stderr
    assert r.stderr.splitlines() == [f"error: model {str(tmp_path / 'nope.onnx')!r} does not exist"]


# onnx and torch made unimportable, as on a device that ran only `pip install edgeloop`
_DEVICE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("onnx", "torch"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from edgeloop.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_command_that_needs_a_build_extra_says_which_in_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", _DEVICE, "optimize", str(tmp_path / "m.onnx"),
         "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert r.returncode == 14, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "pip install 'edgeloop[train]'" in lines[0] and "'onnx'" in lines[0]
    assert not (tmp_path / "out").exists()
