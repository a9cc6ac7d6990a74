"""The README's tour runs as written, line by line, in a fresh folder, and then again in it."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
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


def _start_in_background(cmd: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """A tour line ending in ``&`` (the fleet server): start it, wait for its --port."""
    port = int(cmd[cmd.index("--port") + 1])
    log = open(cwd / "background.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeloop", *cmd[1:]], cwd=cwd, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (cwd / "background.log").read_text()[-2000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{shlex.join(cmd)} did not listen on port {port} within 60 s")


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.timeout(1200)  # two tours, each trains and quantizes a CNN
def test_the_tour_runs_in_order_twice_in_the_same_folder(cli, tmp_path: Path) -> None:
    """A newcomer runs the tour, then runs it again as printed: every line still works (the
    background fleet server of the first run is stopped before the second, as a user would)."""
    for run in (1, 2):
        background: list[subprocess.Popen[bytes]] = []
        try:
            for cmd in tour_commands():
                if cmd[-1] == "&":
                    background.append(_start_in_background(cmd[:-1], tmp_path))
                    continue
                r = cli(*cmd[1:])
                assert r.returncode == 0, (
                    f"run {run}: {shlex.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
                )
        finally:
            for proc in background:
                proc.terminate()
                proc.wait(timeout=30)
        assert (tmp_path / "device.json").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "device" / "identity.json").exists()  # enrolled over TLS
        assert (tmp_path / "digits-2.elb").stat().st_size > 0
        assert (tmp_path / "int8" / "report.html").exists()
        assert (tmp_path / "tuf").is_dir()
