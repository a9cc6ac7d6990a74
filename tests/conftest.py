"""Shared fixtures: the real CLI in a subprocess, temp dirs, and CI strictness."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def run_edgeloop(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edgeloop ARGS`` as a user would, capturing text output."""
    full_env = dict(os.environ)
    full_env.setdefault("COLUMNS", "200")
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "edgeloop", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli("bench", "m.onnx")`` runs the real CLI in ``tmp_path``."""

    def _run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        kw.setdefault("cwd", tmp_path)
        return run_edgeloop(args, **kw)  # type: ignore[arg-type]

    return _run


def skip_or_fail(reason: str) -> None:
    """Skip loudly on a developer's machine; in CI a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)
