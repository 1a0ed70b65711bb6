"""Registries by name (sources, pairings, objectives, model families, data kinds): adding an entry is one
function or class and one decorator; config validation and error messages read the same registry."""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # what an entry is, for messages: "source", "objective", "model family"…
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a temporary one clean up with this)."""
        self._entries.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def values(self) -> list[T]:
        """The entries in the order they were registered."""
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries


# Where each registry lives (imported on first use, so validating a section loads only what it names).
_HOMES = {
    "source": ("components.data", "SOURCES"),
    "pairing": ("components.data.pairings", "PAIRINGS"),
    "objective": ("components.objectives", "OBJECTIVES"),
    "model family": ("components.families", "FAMILIES"),
}


def registry_of(what: str) -> Registry:
    module, attr = _HOMES[what]
    return getattr(importlib.import_module(module), attr)


def check_registered(what: str, name: str) -> str:
    """`name` if `what` registry has it, else a ValueError listing the allowed names (for validators)."""
    reg = registry_of(what)
    if name not in reg:
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(reg.names())}")
    return name
