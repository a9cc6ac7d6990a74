"""The quick-start commands in docs/security.md run as written."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _commands() -> list[list[str]]:
    block = re.search(r"## Quick start\n\n```bash\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None, "docs/security.md lost its quick-start block"
    text = block.group(1).replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_quick_start_runs(
    tmp_path: Path, cli: Callable[..., Any], model_factory: Callable[[int], bytes]
) -> None:
    (tmp_path / "tiny.onnx").write_bytes(model_factory(3))
    commands = _commands()
    assert [c[1] for c in commands] == ["card", "keys", "pack", "verify", "release", "keys"]
    for argv in commands:
        assert argv[0] == "edgeloop"
        r = cli(*argv[1:], env={"EDGELOOP_KEY_PW": "pw"})
        assert r.returncode == 0, (argv, r.stderr)
    assert (tmp_path / "repo" / "metadata" / "2.root.json").is_file()  # after the rotation
    card = json.loads((tmp_path / "tiny.onnx.card.json").read_text())
    assert card["description"] == "a model built elsewhere" and len(card["sha256"]) == 64
