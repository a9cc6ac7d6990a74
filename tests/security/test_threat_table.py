"""Every test docs/security.md names in its server-hardening threat table exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### The fleet server against hostile devices and clients"


def _named_tests() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "security.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n### ", start + len(SECTION))
    return re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text[start:end])


def test_the_table_names_a_test_for_each_attack():
    named = _named_tests()
    assert len(named) >= 20
    for path, name in named:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} is not a test"


def test_attacks_2_3_4_5_7_and_8_each_have_a_row():
    text = (ROOT / "docs" / "security.md").read_text()
    start = text.index(SECTION)
    rows = [r for r in text[start:].splitlines() if r.startswith("| ")]
    numbers = {m.group(1) for r in rows if (m := re.match(r"\| (\d)(?: \(agent side\))?: ", r))}
    assert {"2", "3", "4", "5", "7", "8"} <= numbers
