"""timm-style registries: register by name, create by name, list with wildcards."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name → module whose import registers it

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return deco

    def lazy(self, name: str, module: str) -> None:
        """Known by name now, imported on first get: a run never pays for modules it does not use."""
        if name not in self._items:
            self._lazy[name] = module

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            import importlib

            importlib.import_module(self._lazy[name])
            if name not in self._items:
                raise KeyError(f"module '{self._lazy[name]}' did not register {self.kind} '{name}'")
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} '{name}'{did_you_mean(name, {*self._items, *self._lazy})}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._lazy

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in {*self._items, *self._lazy} if fnmatch.fnmatch(n, pattern))
