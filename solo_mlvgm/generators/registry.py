"""The generator registry: ``@register_generator("name")`` on a class makes it buildable by that name.

Kept apart from ``generators/__init__.py`` so every generator module can import the decorator without an
import cycle; ``build_generator`` (in ``__init__``) imports the built-in modules, which registers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from solo_mlvgm.generators.base import MultiLatentGenerator

GENERATORS: dict[str, type[MultiLatentGenerator]] = {}

G = TypeVar("G", bound=MultiLatentGenerator)


def register_generator(name: str) -> Callable[[type[G]], type[G]]:
    """Class decorator that makes a generator buildable by ``name``; a name is taken by one class only."""

    def add(cls: type[G]) -> type[G]:
        known = GENERATORS.get(name)
        if known is not None and _where(known) != _where(cls):  # the same class again (a reload) is fine
            raise ValueError(f"generator name '{name}' is already registered by {_where(known)}")
        GENERATORS[name] = cls
        return cls

    return add


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
