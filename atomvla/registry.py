"""One registry helper for every kind of plug-in (readers, backends, exporters, configs).

A registry maps a name to a plug-in. Plug-in modules register themselves on import; the registry
names them as dotted module paths and imports them on the first lookup, so importing the
registry (for `--help`) costs nothing and no base module imports its plug-ins (no cycles).
An unknown name is a `UserError` that lists the known names and suggests close ones.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Generic, TypeVar

from atomvla.errors import UserError

T = TypeVar("T")


class UnknownNameError(UserError, KeyError):
    """A name that no plug-in of this kind is registered under."""


class Registry(MutableMapping[str, T], Generic[T]):
    """`name -> plug-in` for one kind (`kind` reads in messages: "backend", "export format")."""

    def __init__(self, kind: str, plugins: Sequence[str] = ()):
        self.kind = kind
        self._plugins = tuple(plugins)
        self._items: dict[str, T] = {}
        self._loaded = not self._plugins
        self._loading = False
        # Re-entrant: a plugin's import may look a name up (in the same thread) before it is done.
        self._lock = threading.RLock()

    def register(self, obj: T, name: str | None = None) -> T:
        """Add `obj` under `name` (default: its `name` attribute); usable as a class decorator."""
        key = name if name is not None else getattr(obj, "name")
        if key in self._items and self._items[key] is not obj:
            raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._items[key] = obj
        return obj

    def registrar(self, name_of: Callable[[T], str]) -> Callable[[T], T]:
        """A decorator that registers under `name_of(obj)` (for plug-ins keyed by more than a name)."""
        return lambda obj: self.register(obj, name_of(obj))

    def _load(self) -> None:
        """Import the plug-ins once. Another thread's lookup waits until they are all registered
        (it would otherwise see an empty registry); a failed import is raised again next time."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                for module in self._plugins:
                    importlib.import_module(module)
            finally:
                self._loading = False
            self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __getitem__(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        """The message for a name that is not registered: the known names and the closest ones."""
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r} (known: {', '.join(known) or 'none'}){hint}"

    def __setitem__(self, name: str, obj: T) -> None:
        self._load()
        self._items[name] = obj

    def __delitem__(self, name: str) -> None:
        self._load()
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(self._items)

    def __len__(self) -> int:
        self._load()
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items
