"""Modules imported on first use.

``cryptography`` is 9 MB of the daemon's memory, and a station that never handles a
certificate (no profile 3, no InstallCertificate, no signed firmware) never needs it.
The first use imports it: about 0.1 s, during which its extension module holds the GIL
for up to 15 ms at a time on an x86-64 VM (the control thread waits that long once). A
configuration that uses certificates has it imported at start instead
(``controller.runtime.startup``).
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """Stands for the module ``name`` and imports it when an attribute is first read;
    thread safe (the import system locks the import itself)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            with self._lock:
                if self._module is None:
                    self._module = importlib.import_module(self.__name__)
                module = self._module
        return getattr(module, attribute)


def lazy_module(name: str) -> ModuleType:
    return LazyModule(name)
