"""Stopping a Flower daemon reaps everything it started: helpers in its own process group, in a
session of their own (the SuperLink's ``flower-superexec``), and what those started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeloop.federated.device import kill_tree, stop_tree
from edgeloop.federated.device._process import alive, descendants

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

# a daemon like flower-superlink: a helper in its own group (Popen), one in a session of its own
# (start_new_session, like the SuperLink's superexec) that starts a grandchild in that session,
# and SIGTERM exits at once without stopping any of them
DAEMON = r"""
import signal, subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
spawn = [sys.executable, "-c", "import subprocess, sys, time; "
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
         "time.sleep(120)"]
subprocess.Popen(sleep)
subprocess.Popen(spawn, start_new_session=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)
time.sleep(120)
"""


def _daemon() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", DAEMON], stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    deadline = time.monotonic() + 30
    while len(descendants(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # the grandchild is started by a child
    return proc


def _wait_gone(tree: dict[tuple[int, int], int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [pid for pid, start in tree if alive((pid, start))]
        if not left:
            return []
        time.sleep(0.05)
    return left


def test_the_tree_is_found_across_groups_and_sessions() -> None:
    proc = _daemon()
    try:
        tree = descendants(proc.pid)
        assert len(tree) == 3
        groups = set(tree.values())
        assert proc.pid in groups and len(groups) == 2  # one helper left the daemon's group
        assert os.getpgrp() not in groups
    finally:
        stop_tree(proc)


def test_stop_reaps_every_descendant_the_group_kill_would_miss() -> None:
    proc = _daemon()
    tree = descendants(proc.pid)
    stop_tree(proc, timeout_s=10)
    assert proc.poll() is not None
    assert _wait_gone(tree) == []


def test_stop_reaps_them_when_the_daemon_ignores_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-c", DAEMON.replace(
        "lambda *_: sys.exit(0)", "signal.SIG_IGN")], stdout=subprocess.PIPE,
        start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    deadline = time.monotonic() + 30
    while len(descendants(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = descendants(proc.pid)
    stop_tree(proc, timeout_s=0.5)  # SIGKILL after half a second
    assert proc.poll() is not None and _wait_gone(tree) == []


def test_kill_tree_reaps_a_process_that_is_not_our_child(tmp_path: Path) -> None:
    # the daemon is started by an intermediate that exits: it is nobody's child of ours
    pid_file = tmp_path / "pid"
    starter = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
               f"{DAEMON!r}], stdout=subprocess.DEVNULL, start_new_session=True); "
               f"open({str(pid_file)!r}, 'w').write(str(p.pid))")
    subprocess.run([sys.executable, "-c", starter], check=True, timeout=30)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while len(descendants(pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = {**descendants(pid), (pid, _start(pid)): pid}
    assert len(tree) == 4
    kill_tree(pid)
    assert _wait_gone(tree) == []


def _start(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rfind(b")") + 2:].split()[19])


def test_a_reused_pid_is_never_taken_for_a_recorded_process() -> None:
    me = (os.getpid(), _start(os.getpid()))
    assert alive(me)
    assert not alive((me[0], me[1] + 1))  # same pid, another start time: another process
