"""The one option coercer: ``name:key=value`` strings (or typed values) -> typed settings.

Every method's options and the pipeline's stage options go through :func:`coerce`; a value that does
not parse, a boolean spelled in an unknown way or an unknown key is an error naming the option and the
valid ones. :data:`ALIASES` holds the accepted alternative names.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from typing import Any

ALIASES = {"fill": "inpainter", "budget": "label_budget"}
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def _base_type(kind: Any) -> tuple[type, bool]:
    """``(the non-None type, whether None is allowed)`` of an annotation such as ``int | None``."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(kind))
    return kind, False


def coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` as the annotated ``kind`` (``bool``, ``int``, ``float``, ``str``, optionally ``| None``).

    Strings are parsed; typed values pass through. ``where`` names the option in the error."""
    base, optional = _base_type(kind)
    if not isinstance(value, str) or base is str and not optional:
        return value
    if optional and value.strip().lower() in ("", "none"):
        return None
    text = value.strip().lower()
    if base is bool:
        if text not in TRUE + FALSE:
            raise ValueError(f"option {where}={value!r}: expected a boolean ({'/'.join(TRUE)} or {'/'.join(FALSE)})")
        return text in TRUE
    try:
        return base(value.strip()) if base in (int, float) else value
    except ValueError:
        raise ValueError(f"option {where}={value!r}: expected {base.__name__}") from None


def parse_options(owner: str, options: Mapping[str, Any], kinds: Mapping[str, Any],
                  ignore: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """Typed values for the keys of ``kinds`` (name -> annotation) from ``options``; aliases applied.

    A key in ``ignore`` is dropped; any other unknown key raises with the list of valid ones."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        key = ALIASES.get(key, key)
        if key in kinds:
            out[key] = coerce(value, kinds[key], f"{owner}:{key}")
        elif key not in ignore:
            raise ValueError(f"unknown option {key!r} for {owner}; valid options: {', '.join(sorted(kinds)) or 'none'}")
    return out


def field_kinds(cls: type) -> dict[str, Any]:
    """``{field: annotation}`` of a dataclass, with postponed annotations resolved."""
    return typing.get_type_hints(cls)


def check_range(name: str, value: Any, lo: float | None = None, hi: float | None = None, *, integer: bool = False,
                open_lo: bool = False, open_hi: bool = False) -> None:
    """A ValueError naming ``name`` unless ``value`` is a finite number (a whole one with ``integer``) in
    ``[lo, hi]`` (``(lo`` / ``hi)`` with ``open_lo`` / ``open_hi``; ``None`` leaves that side open).

    The config dataclasses call it in ``__post_init__``, so a value no run can use (``epochs=0``, a
    threshold of 5, a NaN learning rate) is refused before any data is loaded."""
    left, right = "(" if open_lo or lo is None else "[", ")" if open_hi or hi is None else "]"
    kind = "an integer" if integer else "a number"
    wanted = f"{kind} in {left}{'-inf' if lo is None else _short(lo)}, {'inf' if hi is None else _short(hi)}{right}"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    ok = math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if open_lo else value >= lo
    if ok and hi is not None:
        ok = value < hi if open_hi else value <= hi
    if not ok:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")


def _short(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)
