"""The lightly backend's pretraining methods by name: ``@register_method("simclr")`` on the class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from solo_mlvgm.methods.base import SSLMethod

METHODS: dict[str, type[SSLMethod]] = {}


def register_method(name: str) -> Callable[[type[SSLMethod]], type[SSLMethod]]:
    """Class decorator: makes a method buildable by ``method=<name>`` on the lightly backend."""

    def add(cls: type[SSLMethod]) -> type[SSLMethod]:
        known = METHODS.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:  # the same class again is fine
            raise ValueError(f"method name '{name}' is already registered by {known.__qualname__}")
        METHODS[name] = cls
        return cls

    return add
