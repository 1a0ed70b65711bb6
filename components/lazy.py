"""A module imported on first attribute access. The objective registry is read by config validation
(names, whether an objective has targets or needs a Lipschitz constraint); binding torch lazily there
keeps a config error from waiting ~6 s for torch to load."""
from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attr)
