"""Where each registry lives, by kind name (used by config validation and error messages)."""
from __future__ import annotations

import importlib

from components.registry import Registry

_MODULES = {
    "source": ("components.data.sources", "SOURCES"),
    "model": ("components.models", "MODELS"),
    "objective": ("components.objectives", "OBJECTIVES"),
    "pairing": ("components.data.pairings", "PAIRINGS"),
}


def by_kind(kind: str) -> Registry:
    module, attr = _MODULES[kind]
    return getattr(importlib.import_module(module), attr)
