"""Stopping a Flower process with everything it started.

Flower's daemons start helpers that outlive them unless reaped: ``flower-supernode`` starts
``flower-superexec`` (its process group), which starts a ``flwr-clientapp`` per message;
``flower-superlink`` starts its ``flower-superexec`` in a session of its own
(``start_new_session``), which starts ``flwr-serverapp`` processes in that new group. Killing
the daemon's process group therefore misses the SuperLink's helpers, and a helper whose parent
is gone is reparented away from it, out of reach of a later look at the tree.

:func:`stop_tree` and :func:`kill_tree` take the tree first (Linux: every descendant from
``/proc``, with its start time so a reused pid is never hit), then stop the root, then kill
every recorded descendant still alive and the process group of each (which holds what it
started after the look), and look again while anything survives. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["alive", "descendants", "kill_tree", "stop_tree"]

Identity = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, pgid, start time, state) of a live process, None when gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()  # after "pid (comm) "
    try:
        return int(fields[1]), int(fields[2]), int(fields[19]), fields[0].decode()
    except (IndexError, ValueError):
        return None


def _table() -> dict[int, tuple[int, int, int, str]]:
    out = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                found = _stat(int(entry.name))
                if found is not None:
                    out[int(entry.name)] = found
    return out


def alive(identity: Identity) -> bool:
    """That process (the same start time: not a reused pid) exists and is not a zombie."""
    found = _stat(identity[0])
    return found is not None and found[2] == identity[1] and found[3] not in ("Z", "X")


def descendants(pid: int) -> dict[Identity, int]:
    """Every live descendant of ``pid`` (children, theirs, ...): identity -> process group.
    Empty where ``/proc`` is missing (not Linux)."""
    table = _table()
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(child)
    out: dict[Identity, int] = {}
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        ppid, pgid, start, state = table[p]
        if state not in ("Z", "X"):
            out[(p, start)] = pgid
        todo.extend(children.get(p, []))
    return out


def _reap(known: dict[Identity, int], groups: set[int], rounds: int = 5) -> None:
    """SIGKILL the recorded descendants still alive and their process groups (never ours),
    then look under the survivors again, until nothing survives."""
    own = os.getpgrp()
    for _ in range(rounds):
        for pgid in groups - {own, 0, 1}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        living = [ident for ident in known if alive(ident)]
        for pid, _ in living:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not living:
            return
        time.sleep(0.05)
        for pid, _ in living:  # what they started since the first look
            found = descendants(pid)
            known.update(found)
            groups.update(found.values())
        groups.update(pgid for ident, pgid in known.items() if alive(ident))


def stop_tree(process: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    """SIGTERM ``process`` (a child of this one; when started with ``start_new_session``, the
    leader of its own process group), SIGKILL it after ``timeout_s``, then kill whatever it
    started that is still alive (module docstring): its process group and every descendant
    found, in whatever group or session."""
    known = descendants(process.pid)
    # its own group when it leads one (killpg of a pid that leads no group finds nothing)
    groups = set(known.values()) | {process.pid}
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
    _reap(known, groups)


def kill_tree(pid: int) -> None:
    """SIGKILL process ``pid`` (not necessarily a child of this one: one named by a pid file),
    its process group and every descendant (module docstring)."""
    known = descendants(pid)
    groups = set(known.values()) | {pid}
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    _reap(known, groups)
