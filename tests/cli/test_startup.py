"""``edgeloop --help`` stays light: no heavy framework is imported just to print help."""

from __future__ import annotations

import subprocess
import sys

HEAVY = {"torch", "onnx", "onnxruntime", "numpy", "scipy", "sklearn", "fastapi", "sqlalchemy"}


def _imported_modules(args: list[str]) -> set[str]:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgeloop", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    names = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "edgeloop" in names  # the listing was parsed
    return names


def test_help_imports_no_heavy_framework() -> None:
    assert _imported_modules(["--help"]) & HEAVY == set()


def test_command_help_imports_no_heavy_framework() -> None:
    assert _imported_modules(["bench", "--help"]) & HEAVY == set()
