"""The name -> class table behind every part crossfake creates by name.

Corpora (``get_corpus("ffpp", …)``), face detectors, detection methods and VLM backends are each a
:class:`Registry`: a module adds its class with ``@registry.register("name")`` and generic code builds it
by name, so adding one never means editing a switch statement.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from crossfake.utils.errors import CrossfakeError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named factories of one kind (``kind`` is used in messages, e.g. ``"face detector"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding a class (or factory) under ``name``; a second, different one is an error."""

        def deco(obj: T) -> T:
            if self._items.get(name, obj) is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice ({self._items[name]!r}, {obj!r})")
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, why: str = "") -> T:
        """The entry ``name``; an unknown name is a :class:`CrossfakeError` listing the known ones."""
        if name not in self._items:
            raise CrossfakeError(f"unknown {self.kind} {name!r}{why}; available: {', '.join(self.names())}")
        return self._items[name]

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """Call entry ``name`` with ``options``; options it does not take are a :class:`CrossfakeError`."""
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(*args, **options)
        except TypeError as e:
            raise CrossfakeError(f"invalid options for {self.kind} {name!r}: {e}") from None
        return factory(*args, **options)
