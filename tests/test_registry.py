"""The name -> factory registry and the registries built on it."""

from __future__ import annotations

import pytest

from autobackswap.methods.base import METHODS, parse_method_spec
from autobackswap.registry import Registry
from autobackswap.train.models import MODELS


def test_register_get_and_list() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    def make_b() -> str:
        return "b"

    reg.register("a")(str)
    assert reg.get("b") is make_b
    assert reg.get("a") is str
    assert reg.names() == ["a", "b"]
    assert list(reg) == ["a", "b"]
    assert "a" in reg and "c" not in reg


def test_unknown_name_lists_valid_names() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("zeta")(1)
    reg.register("alpha")(2)
    with pytest.raises(KeyError) as exc:
        reg.get("gamma")
    assert exc.value.args[0] == "unknown widget 'gamma'; valid names: alpha, zeta"


def test_duplicate_name_rejected() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("x")(1)
    with pytest.raises(ValueError, match="widget 'x' is already registered"):
        reg.register("x")(2)
    assert reg.get("x") == 1


def test_builtin_registries_hold_the_defaults() -> None:
    assert {"small_resnet", "resnet18"} <= set(MODELS.names())
    assert "erm" in METHODS


def test_parse_method_spec() -> None:
    assert parse_method_spec("erm") == ("erm", {})
    assert parse_method_spec(" erm:a=1: b = x ") == ("erm", {"a": "1", "b": "x"})
    with pytest.raises(ValueError, match="must look like key=value"):
        parse_method_spec("erm:novalue")
    with pytest.raises(KeyError, match="unknown method 'nope'; valid names: .*erm"):
        parse_method_spec("nope:a=1")
