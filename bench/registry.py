"""Name -> object registries for methods, tasks and presets.

Registries are filled by explicit imports (``methods/__init__.py``, ``tasks/__init__.py``), never
by scanning directories, so what is registered is visible in the code. Third-party packages add
entries through a Python entry-point group, loaded lazily on first lookup. Duplicate names are
errors; unknown names raise a :class:`~bench.errors.BenchError` that lists the valid ones, so the
CLI can show them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from importlib import import_module, metadata
from typing import Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class Registry(Generic[T]):
    """An ordered mapping from names to registered objects.

    Args:
        kind: what is registered ("method", "task", ...), used in error messages.
        builtin_module: module whose import registers the built-in entries (e.g. ``"tasks"``).
        entry_point_group: optional entry-point group for third-party plug-ins; each entry point
            ``name = "pkg.module:obj"`` is loaded and registered under ``name``.
    """

    def __init__(
        self, kind: str, builtin_module: str | None = None, entry_point_group: str | None = None
    ):
        self.kind = kind
        self._builtin_module = builtin_module
        self._entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""
        if obj is None:

            def decorator(o: T) -> T:
                self._add(name, o)
                return o

            return decorator
        self._add(name, obj)
        return obj

    def _add(self, name: str, obj: T) -> None:
        # Names become directory names (run ids, records): ASCII only, short enough for a run id.
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"invalid {self.kind} name {name!r}: use 1-64 ASCII letters, digits, '_' or '-', "
                "starting with a letter or digit"
            )
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"duplicate {self.kind} name {name!r}")
        self._items[name] = obj

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._builtin_module:
            import_module(self._builtin_module)
        if self._entry_point_group:
            for ep in metadata.entry_points(group=self._entry_point_group):
                if ep.name in self._items:
                    continue
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plug-in must not look like a harness bug
                    raise BenchError(
                        f"the {self.kind} plug-in {ep.name!r} ({ep.value}) failed to load: {exc.__class__.__name__}: {exc}",
                        hint=f"fix or uninstall the package that registers it in the {self._entry_point_group!r} entry-point group",
                    ) from exc
                self._add(ep.name, obj)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        self._ensure_loaded()
        return list(self._items)

    def get(self, name: str) -> T:
        """Look ``name`` up; unknown names raise a BenchError listing the valid ones."""
        self._ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            raise BenchError(
                f"unknown {self.kind} {name!r}",
                hint=f"valid {self.kind}s: {', '.join(self._items) or '(none registered)'}",
            ) from None

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
