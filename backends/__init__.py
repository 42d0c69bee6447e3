"""Platforms that run Dask workers, behind one small interface (``backends.base.Backend``).

Look a backend up by name with ``backends.registry.get(name)``.
"""

from backends.base import Backend, BackendOptions, ScaleResult
from backends.registry import get, names, register

__all__ = ["Backend", "BackendOptions", "ScaleResult", "get", "names", "register"]
