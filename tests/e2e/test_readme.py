"""The README's tour runs as written, line by line, in a fresh folder, and then again in it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## A tour.*?```console\n(.*?)```", text, re.S)
    assert block, "README.md has no tour block"
    lines = [ln[2:] for ln in block.group(1).splitlines() if ln.startswith("$ ")]
    return [shlex.split(ln) for ln in lines]


def test_the_tour_is_made_of_edgeloop_commands() -> None:
    cmds = tour_commands()
    assert len(cmds) >= 10
    assert all(c[0] == "edgeloop" for c in cmds)


def test_the_setup_commands_are_marked_for_ci() -> None:
    text = README.read_text(encoding="utf-8")
    for marker in ("demo-command", "test-command"):
        m = re.search(rf"<!-- {marker} -->\n```\n(.+?)\n```\n<!-- /{marker} -->", text, re.S)
        assert m, marker
        assert "pip install torch==2.13.0" in m.group(1)
    assert "edgeloop demo" in text and "python -m pytest" in text
    test_command = re.search(r"<!-- test-command -->\n```\n(.+?)\n```", text, re.S)
    assert test_command is not None
    # pytest-xdist on every core, and the slowest tests named at the end of each CI run
    assert "-n auto" in test_command.group(1) and "--durations=15" in test_command.group(1)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two tours, each trains and quantizes a CNN
def test_the_tour_runs_in_order_twice_in_the_same_folder(cli, tmp_path: Path) -> None:
    """A newcomer runs the tour, then runs it again as printed: every line still works."""
    for run in (1, 2):
        for cmd in tour_commands():
            r = cli(*cmd[1:])
            assert r.returncode == 0, (
                f"run {run}: {shlex.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
            )
        assert (tmp_path / "digits-2.elb").stat().st_size > 0
        assert (tmp_path / "int8" / "report.html").exists()
        assert (tmp_path / "tuf").is_dir()
