"""Persistence: clusters, the pool, API tokens, decisions and observations.

``Store(url)`` is thread-safe (a session per call); ``Store.upgrade()`` applies the Alembic
migrations kept in ``autoscaler/store/migrations``.
"""

from autoscaler.store._history import ObservationRow
from autoscaler.store.store import Store

__all__ = ["ObservationRow", "Store"]
