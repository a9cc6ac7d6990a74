import pytest

from edgeloop import errors
from edgeloop.errors import EdgeloopError, all_error_classes


def test_every_error_has_help_and_a_distinct_exit_code() -> None:
    classes = all_error_classes()
    assert len(classes) >= 20
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes)), "exit codes must be unique"
    for cls in classes:
        assert cls.help and cls.help != EdgeloopError.help or cls is EdgeloopError, cls
        assert 1 <= cls.exit_code <= 125


def test_every_error_in_module_all_is_in_the_tree() -> None:
    exported = {getattr(errors, n) for n in errors.__all__ if n[0].isupper()}
    assert exported == set(all_error_classes())


@pytest.mark.parametrize("cls", all_error_classes())
def test_every_error_is_catchable_as_the_root(cls: type[EdgeloopError]) -> None:
    with pytest.raises(EdgeloopError):
        raise cls("x")


def test_subclass_codes_fall_in_their_parents_range() -> None:
    for cls in all_error_classes():
        parent = cls.__mro__[1]
        if parent is not EdgeloopError and issubclass(parent, EdgeloopError):
            assert cls.exit_code // 10 == parent.exit_code // 10, cls
