"""A tiny name -> factory registry (timm's ``register_model`` / ``create_model`` pattern).

Inpainters, detector backbones, classifier models and training methods are all registered by
name; an unknown name raises an error that lists the valid ones. A *family* (``tv:<name>``, ``timm:<name>``)
resolves a whole namespace of names through one function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to an object (usually a class or a factory function)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._families: dict[str, Callable[[str], T]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def register_family(self, prefix: str) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
        """Register ``resolve(rest) -> object`` for every name ``prefix:rest``; ``resolve`` raises a KeyError
        (saying why) when ``rest`` is not a valid member."""

        def decorator(resolve: Callable[[str], T]) -> Callable[[str], T]:
            if prefix in self._families:
                raise ValueError(f"{self.kind} family {prefix!r} is already registered")
            self._families[prefix] = resolve
            return resolve

        return decorator

    def family(self, name: str) -> str | None:
        """The family prefix of ``name`` (``"tv"`` for ``"tv:resnet50"``), or None for a plain name."""
        prefix, sep, _ = name.partition(":")
        return prefix if sep and prefix in self._families and name not in self._items else None

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        prefix = self.family(name)
        if prefix is not None:
            try:
                return self._families[prefix](name.partition(":")[2])
            except KeyError as exc:
                raise KeyError(f"unknown {self.kind} {name!r}: {exc.args[0] if exc.args else exc}") from None
        raise KeyError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names() + self.families())}")

    def names(self) -> list[str]:
        return sorted(self._items)

    def families(self) -> list[str]:
        """The registered families as ``prefix:<name>``."""
        return [f"{prefix}:<name>" for prefix in self._families]

    def __contains__(self, name: object) -> bool:
        return name in self._items or (isinstance(name, str) and self.family(name) is not None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
