import importlib

import edgeloop


def test_all_matches_public_members() -> None:
    public = {n for n in dir(edgeloop) if not n.startswith("_")} | {"__version__"}
    modules = {n for n in public if type(getattr(edgeloop, n, None)).__name__ == "module"}
    assert set(edgeloop.__all__) == public - modules


def test_every_exported_name_resolves() -> None:
    for name in edgeloop.__all__:
        assert getattr(edgeloop, name) is not None, name


def test_lazy_names_come_from_their_modules() -> None:
    for name, module in edgeloop._LAZY.items():
        assert getattr(importlib.import_module(module), name) is getattr(edgeloop, name)
