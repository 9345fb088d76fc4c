import pytest

from robot_rl.core.registry import Registry, UnknownNameError

pytestmark = pytest.mark.unit


def test_register_get_and_names():
    reg = Registry("widget")

    @reg.register("a", dict)
    class A:
        pass

    assert reg.get("a") is A
    assert reg.config_cls("a") is dict
    assert reg.names() == ["a"]
    assert "a" in reg and "b" not in reg


def test_unknown_name_lists_valid_ones():
    reg = Registry("widget")
    reg.register("x")(object)
    reg.register("y")(int)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'z'; valid: x, y"):
        reg.get("z")


def test_known_entries_are_imported_lazily():
    reg = Registry("algorithm", known={"bc": "robot_rl.algos.bc"})
    assert reg.names() == ["bc"]
    from robot_rl.algos import ALGOS

    assert ALGOS.get("bc").__name__ == "BC"


def test_double_registration_of_a_different_object_fails():
    reg = Registry("widget")
    reg.register("a")(int)
    reg.register("a")(int)  # same object again: fine (module re-import)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(float)
