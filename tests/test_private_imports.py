"""Packages use each other only through their public API: no import of another package's
``_``-module (``edgeloop.<pkg>._x``) from outside ``<pkg>``.

Scans the source with ``ast`` (module-level and function-level imports alike, relative imports
resolved), so an import inside a command function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import edgeloop

SRC = Path(edgeloop.__file__).resolve().parent


def _module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, here: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) for every module the file imports, ``from x import y`` as ``x.y`` too."""
    out: list[tuple[int, str]] = []
    package = here if is_package else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def offenders(src: Path = SRC) -> list[str]:
    """``file:line: imports edgeloop.pkg._x`` for each cross-package private import."""
    found = []
    for path in sorted(src.rglob("*.py")):
        here = _module_name(path, src)
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, name in _imported(tree, here, path.name == "__init__.py"):
            parts = name.split(".")
            if parts[0] != "edgeloop" or len(parts) < 3:
                continue
            # the first private part: edgeloop.<pkg>...._x; everything up to it is its owner
            private = next((i for i, p in enumerate(parts) if p.startswith("_")), None)
            if private is None or private < 2:
                continue  # edgeloop._io and edgeloop.__version__ belong to the root package
            owner = ".".join(parts[:private])
            if here == owner or here.startswith(owner + "."):
                continue
            rel = path.relative_to(src.parent)
            found.append(f"{rel}:{line}: imports {'.'.join(parts[: private + 1])}")
    return sorted(set(found))


def test_the_scan_finds_a_private_import(tmp_path: Path) -> None:
    pkg = tmp_path / "edgeloop"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from edgeloop.a._impl import f\n")
    (pkg / "a" / "_impl.py").write_text("from . import _other\ndef f(): ...\n")
    (pkg / "a" / "_other.py").write_text("")
    (pkg / "b" / "__init__.py").write_text(
        "from edgeloop.a import f\ndef g():\n    from edgeloop.a._impl import f\n"
    )

    found = offenders(pkg)

    assert found == ["edgeloop/b/__init__.py:3: imports edgeloop.a._impl"]


def test_no_package_imports_another_packages_private_modules() -> None:
    found = offenders()

    assert not found, "imports of another package's private modules:\n" + "\n".join(found)
