"""The package shape holds: no import cycles between edgeloop's packages, ONNX Runtime sessions
only in ``edgeloop.runtime``, and the device layer's third-party contract covers every device
package that exists. The layers themselves are import-linter's contract in pyproject.toml
(``lint-imports`` in CI); tests/test_design_doc.py keeps docs/design.md's table in step with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest
import tomllib

import edgeloop

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(edgeloop.__file__).resolve().parent


def contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def _package(module: str) -> str:
    """``edgeloop.runtime._session`` -> ``edgeloop.runtime``; root modules stay themselves."""
    return ".".join(module.split(".")[:2])


def package_graph(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Module imports collapsed to imports between top-level packages (self-imports dropped)."""
    graph: dict[str, set[str]] = {}
    for importer, imported in edges:
        a, b = _package(importer), _package(imported)
        if a != b and a != "edgeloop" and b != "edgeloop":
            graph.setdefault(a, set()).add(b)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _edges() -> list[tuple[str, str]]:
    g = grimp.build_graph("edgeloop", cache_dir=None)
    return [
        (m, imported)
        for m in g.modules
        for imported in g.find_modules_directly_imported_by(m)
        if imported.startswith("edgeloop.")
    ]


def test_cycle_finder_names_a_cycle() -> None:
    edges = [
        ("edgeloop.runtime._session", "edgeloop.bundle"),
        ("edgeloop.bundle._load", "edgeloop.runtime._session"),
        ("edgeloop.agent._agent", "edgeloop.bundle._load"),
        ("edgeloop.cli.fleet", "edgeloop.cli.simulate"),  # inside one package: not a cycle here
    ]

    assert cycles(package_graph(edges)) == [["edgeloop.bundle", "edgeloop.runtime"]]


def test_no_import_cycles_between_packages() -> None:
    found = cycles(package_graph(_edges()))

    assert not found, "import cycles between packages: " + "; ".join(" <-> ".join(c) for c in found)


def inference_sessions(src: Path = SRC) -> list[str]:
    """``file:line`` of every ``InferenceSession(`` in the source outside edgeloop/runtime."""
    hits = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent)
        if rel.parts[:2] == ("edgeloop", "runtime"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bInferenceSession\(", line):
                hits.append(f"{rel}:{n}")
    return hits


def test_onnx_runtime_sessions_are_built_only_in_runtime() -> None:
    assert inference_sessions() == []


def test_the_session_scan_sees_one_outside_runtime(tmp_path: Path) -> None:
    (tmp_path / "edgeloop" / "runtime").mkdir(parents=True)
    (tmp_path / "edgeloop" / "zoo").mkdir()
    (tmp_path / "edgeloop" / "runtime" / "_s.py").write_text("ort.InferenceSession(p)\n")
    (tmp_path / "edgeloop" / "zoo" / "_x.py").write_text("\n s = ort.InferenceSession(p)\n")

    assert inference_sessions(tmp_path / "edgeloop") == ["edgeloop/zoo/_x.py:2"]


def _layer_names(layer: str) -> list[tuple[str, bool]]:
    """``"a : (b)"`` -> ``[("a", False), ("b", True)]`` (name, optional)."""
    parts = [p.strip() for p in re.split(r"[|:]", layer)]
    return [(p.strip("()"), p.startswith("(")) for p in parts]


def test_every_existing_device_package_is_held_to_the_device_imports() -> None:
    layers = contracts()["layers"]["layers"]
    assert isinstance(layers, list)
    device = [name for name, _ in _layer_names(layers[-1])]
    sources = contracts()["device-externals"]["source_modules"]
    assert isinstance(sources, list)
    # federated.device alone may import flwr: held to the same list, less flwr, in its own contract
    flower = contracts()["federated-device-externals"]
    assert flower["source_modules"] == ["edgeloop.federated.device"]
    assert isinstance(flower["forbidden_modules"], list)
    device_forbidden = contracts()["device-externals"]["forbidden_modules"]
    assert isinstance(device_forbidden, list)
    assert set(device_forbidden) - set(flower["forbidden_modules"]) == {"flwr"}
    sources = [*sources, "edgeloop.federated.device"]
    existing = [
        n
        for n in device
        if (SRC / n.replace(".", "/")).exists() or (SRC / (n.replace(".", "/") + ".py")).exists()
    ]

    missing = [n for n in existing if f"edgeloop.{n}" not in sources]

    assert not missing, f"add {missing} to the device-externals contract's source_modules"


@pytest.mark.parametrize("layer", range(4))
def test_every_required_layer_package_exists(layer: int) -> None:
    layers = contracts()["layers"]["layers"]
    assert isinstance(layers, list)
    for name, optional in _layer_names(layers[layer]):
        path = SRC / name.replace(".", "/")
        exists = path.is_dir() or path.with_suffix(".py").exists()
        assert optional or exists, f"layer {layer}: edgeloop.{name} does not exist"
