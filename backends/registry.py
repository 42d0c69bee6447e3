"""Backend names to classes: the built-in modules, plus third-party entry points.

A third party adds a backend with an entry point in group ``autoscaler.backends``::

    [project.entry-points."autoscaler.backends"]
    mycloud = "mypackage.backend:MyCloudBackend"

The entry point's name is the backend's name; the class must subclass ``Backend``. Built-in
modules and entry points are loaded on first lookup; one that fails to load is left out (its
error is shown when it is asked for by name) so it cannot break the others.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from autoscaler.errors import ConfigError
from backends.base import Backend

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "autoscaler.backends"
BUILTIN_MODULES = ("backends.local", "backends.kubernetes", "backends.aurora")

_registry: dict[str, type[Backend]] = {}
_failures: dict[str, str] = {}
_loaded = False


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    return _add(getattr(cls, "name", ""), cls)


def get(name: str) -> type[Backend]:
    """The backend class called ``name``, or ``ConfigError`` listing the known ones."""
    _load()
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(names()) or "none"
        why = f" ({name} failed to load: {_failures[name]})" if name in _failures else ""
        raise ConfigError(f"unknown backend {name!r}; known: {known}{why}") from None


def names() -> list[str]:
    """Names of every available backend, sorted."""
    _load()
    return sorted(_registry)


def _add(name: str, cls: type[Backend]) -> type[Backend]:
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{cls!r} is not a Backend subclass")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} has no backend name")
    existing = _registry.get(name)
    if existing is not None and existing is not cls:
        raise ConfigError(
            f"backend {name!r} is registered twice: {_path(existing)} and {_path(cls)}"
        )
    _registry[name] = cls
    return cls


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but a dependency is missing
                _failures[module.rpartition(".")[2]] = str(exc)
        except Exception as exc:
            _failures[module.rpartition(".")[2]] = repr(exc)
            log.exception("backend module %s failed to load", module)
    load_entry_points()


def load_entry_points() -> None:
    """Register the classes of every ``autoscaler.backends`` entry point (again if new)."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in _registry:
            continue
        try:
            _add(entry_point.name, entry_point.load())
        except Exception as exc:
            _failures[entry_point.name] = repr(exc)
            log.exception("backend entry point %s failed to load", entry_point.value)
