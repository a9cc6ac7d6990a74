"""Usage errors through the real CLI: one line naming the value and what was expected, exit 2.

Runs ``python -m edgeloop`` in a subprocess, so it exercises whichever typer line is installed
(typer >= 0.22 raises its bundled click's exceptions, typer < 0.21 standalone click's).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

USAGE_EXIT = 2


def _edgeloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeloop", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


# (argv, fragments the one error line must contain, case-insensitively; a tuple: any of them)
CASES: dict[str, tuple[list[str], list[str | tuple[str, ...]]]] = {
    "unknown command": (["nosuch"], ["nosuch", "edgeloop --help"]),
    "unknown subcommand": (["keys", "nosuch"], ["nosuch", "edgeloop keys --help"]),
    "unknown option": (["targets", "--bogus"], ["--bogus", "edgeloop targets --help"]),
    "missing argument": (["bench"], ["model", "edgeloop bench --help"]),
    "missing option": (["prune", "m.pt", "--out", "x.pt"], ["--ratio", "edgeloop prune"]),
    "bad type": (["bench", "m.onnx", "--threads", "abc"], ["--threads", "'abc'", "integer"]),
    "out of range": (
        ["bench", "m.onnx", "--threads", "0"],
        # typer >= 0.22 words it through pydantic, typer < 0.21 through click's IntRange
        ["--threads", ("'0'", "0 is not"), ("greater than or equal to 1", "x>=1")],
    ),
    "bad choice": (
        ["prune", "m.pt", "--ratio", "0.5", "--out", "x.pt", "--importance", "l3"],
        ["--importance", "'l3'", "'taylor'"],
    ),
    "option without value": (["bench", "m.onnx", "--threads"], ["--threads", "requires"]),
    "extra argument": (["targets", "a", "b"], ["(b)", "extra argument"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_usage_error_is_one_line_and_exit_2(case: str) -> None:
    argv, fragments = CASES[case]

    r = _edgeloop(*argv)

    lines = r.stderr.strip().splitlines()
    assert r.returncode == USAGE_EXIT, r.stderr
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        options = fragment if isinstance(fragment, tuple) else (fragment,)
        assert any(o.lower() in lines[0].lower() for o in options), (fragment, lines[0])
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_bare_group_prints_its_help_and_exits_0() -> None:
    r = _edgeloop("keys")

    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_help_has_no_python_annotation_metavars() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "edgeloop", "pack", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )

    assert r.returncode == 0, r.stderr
    assert "<bool>" not in r.stdout
    assert "list[" not in r.stdout
    encrypt = next(line for line in r.stdout.splitlines() if "--encrypt-to" in line)
    assert "<path>" in encrypt.lower() or "PATH" in encrypt


def test_prune_importance_choices_match_the_pass() -> None:
    pytest.importorskip("torch_pruning")
    from edgeloop.cli.compress import Importance
    from edgeloop.optimize._prune import IMPORTANCES

    assert tuple(i.value for i in Importance) == IMPORTANCES


def test_every_option_has_help() -> None:
    import typer.main

    from edgeloop.cli.app import app

    missing: list[str] = []

    def walk(command: object, path: str) -> None:
        for param in getattr(command, "params", []):
            if param.param_type_name == "option" and not param.help:
                missing.append(f"{path} {param.opts[0]}")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "edgeloop")

    assert missing == []
