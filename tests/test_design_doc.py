"""docs/design.md's layer table is the import-linter contract in pyproject.toml, regenerated."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
NAMES = ["interface", "orchestration", "service", "build", "device"]


def _names(layer: str) -> list[str]:
    """``"a : (b)"`` -> ``["a", "b*"]``: a starred package is placed but not yet written."""
    parts = [p.strip() for p in re.split(r"[|:]", layer)]
    return [f"{p[1:-1]}*" if p.startswith("(") else p for p in parts]


def layer_table(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The markdown table of the layers: from the ``layers`` contract, its middle layer split
    into service and build by the ``build-not-service`` contract."""
    config = tomllib.loads(pyproject.read_text())
    contracts = {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}
    top, orchestration, middle, device = contracts["layers"]["layers"]
    service, build = contracts["build-not-service"]["layers"]
    assert sorted(_names(middle)) == sorted(_names(service) + _names(build)), (
        "the service and build contracts must split the layers contract's third layer"
    )
    rows = [_names(top), _names(orchestration), _names(service), _names(build), _names(device)]
    may = [
        "every layer below",
        "service, build, device",
        "device (never build)",
        "device (never service)",
        "the device layer only; numpy, onnxruntime, cryptography, httpx, tuf",
    ]
    lines = ["| layer | packages | may import |", "| --- | --- | --- |"]
    for name, packages, imports in zip(NAMES, rows, may, strict=True):
        cells = ", ".join(f"`{p.rstrip('*')}`*" if p.endswith("*") else f"`{p}`" for p in packages)
        lines.append(f"| {name} | {cells} | {imports} |")
    return "\n".join(lines)


def _doc_table() -> str:
    text = DESIGN.read_text()
    found = re.search(r"<!-- layer-table -->\n(.*?)\n<!-- /layer-table -->", text, re.S)
    assert found, "docs/design.md has no <!-- layer-table --> block"
    return found.group(1).strip()


def test_design_doc_layer_table_matches_the_contract() -> None:
    assert _doc_table() == layer_table(), (
        "docs/design.md's layer table differs from pyproject.toml's contract; regenerate it:\n"
        + layer_table()
    )


def test_the_table_follows_a_changed_contract(tmp_path: Path) -> None:
    text = (ROOT / "pyproject.toml").read_text().replace('"demo : (loop)"', '"demo"')
    (tmp_path / "pyproject.toml").write_text(text)

    table = layer_table(tmp_path / "pyproject.toml")

    assert "| orchestration | `demo` |" in table and table != _doc_table()
