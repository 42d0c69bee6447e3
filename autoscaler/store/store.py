"""The store: clusters, the pool and API tokens (history lives in ``_history``).

Every method opens its own session and returns plain domain objects, so one ``Store`` may be
shared by the API's worker threads and the control loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from typing import Any, cast

from sqlalchemy import CursorResult, Select, delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from autoscaler.domain import DEFAULT_RESOURCES, ClusterSpec, Pool
from autoscaler.errors import ConfigError, Conflict, NotFound
from autoscaler.store import engine as engines
from autoscaler.store._history import HistoryMixin
from autoscaler.store.models import (
    ClusterRow,
    DecisionRow,
    LatestDecisionRow,
    ObservationRowORM,
    PoolRow,
    TokenRow,
    unstorable,
)

_SPEC_FIELDS = frozenset(f.name for f in fields(ClusterSpec))
_UPDATABLE = _SPEC_FIELDS - {"name"}


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Store(HistoryMixin):
    """Thread-safe access to the database at ``url`` (a SQLAlchemy URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engines.make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self) -> None:
        """Apply all migrations (``alembic upgrade head``)."""
        engines.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # --- clusters ---

    @staticmethod
    def _cluster_query(name: str, group: str | None) -> Select[ClusterRow]:
        query = select(ClusterRow).where(ClusterRow.name == name)
        if group is not None:
            query = query.where(ClusterRow.group == group)
        return query

    def _cluster_row(self, session: Session, name: str, group: str | None) -> ClusterRow:
        row = None
        if not unstorable(name, group):
            row = session.scalars(self._cluster_query(name, group)).one_or_none()
        if row is None:
            raise NotFound(f"no cluster named {name!r}")
        return row

    def list_clusters(
        self, *, group: str | None = None, tier: int | None = None
    ) -> list[ClusterSpec]:
        if unstorable(group):
            return []
        query = select(ClusterRow).order_by(ClusterRow.name)
        if group is not None:
            query = query.where(ClusterRow.group == group)
        if tier is not None:
            query = query.where(ClusterRow.tier == tier)
        with self._session() as session:
            return [row.to_spec() for row in session.scalars(query)]

    def get_cluster(self, name: str, *, group: str | None = None) -> ClusterSpec:
        with self._session() as session:
            return self._cluster_row(session, name, group).to_spec()

    def create_cluster(self, spec: ClusterSpec) -> ClusterSpec:
        now = time.time()
        values = {f: getattr(spec, f) for f in _SPEC_FIELDS}
        try:
            with self._session() as session:
                row = ClusterRow(**values, created_at=now, updated_at=now)
                session.add(row)
                session.flush()
                return row.to_spec()
        except IntegrityError as exc:
            if self._exists(spec.name):
                raise Conflict(f"a cluster named {spec.name!r} already exists") from exc
            raise ConfigError(f"invalid cluster {spec.name!r}") from exc

    def _exists(self, name: str) -> bool:
        with self._session() as session:
            return session.scalar(select(ClusterRow.id).where(ClusterRow.name == name)) is not None

    def update_cluster(
        self, name: str, changes: Mapping[str, Any], *, group: str | None = None
    ) -> ClusterSpec:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ConfigError(f"fields that cannot be changed: {', '.join(sorted(unknown))}")
        try:
            with self._session() as session:
                row = self._cluster_row(session, name, group)
                for key, value in changes.items():
                    setattr(row, key, value)
                row.updated_at = time.time()
                session.flush()
                return row.to_spec()
        except IntegrityError as exc:
            raise ConfigError(f"invalid change of cluster {name!r}") from exc

    def delete_cluster(self, name: str, *, group: str | None = None) -> None:
        """Forget a cluster and its history; nothing is scaled."""
        with self._session() as session:
            row = self._cluster_row(session, name, group)
            session.delete(row)
            for table in (DecisionRow, LatestDecisionRow, ObservationRowORM):
                session.execute(delete(table).where(table.cluster == name))

    # --- pool ---

    def get_pool(self) -> Pool | None:
        """The pool, or None until one is set (its resources are then ``DEFAULT_RESOURCES``)."""
        with self._session() as session:
            row = session.get(PoolRow, 1)
            return None if row is None else Pool(capacity=dict(row.capacity))

    def pool_resources(self) -> tuple[str, ...]:
        pool = self.get_pool()
        return DEFAULT_RESOURCES if pool is None else pool.resources

    def set_pool(self, pool: Pool) -> Pool:
        """Replace the pool; Conflict if a dropped resource is still used by a cluster's worker."""
        with self._session() as session:
            dropped = set(self._current_resources(session)) - set(pool.capacity)
            if dropped:
                users = sorted(
                    row.name
                    for row in session.scalars(select(ClusterRow))
                    if dropped & set(row.worker)
                )
                if users:
                    raise Conflict(
                        f"resources {sorted(dropped)} are used by clusters {users[:10]}"
                        f"{' and more' if len(users) > 10 else ''}; change them first"
                    )
            row = session.get(PoolRow, 1, with_for_update=True)
            if row is None:
                session.add(PoolRow(id=1, capacity=dict(pool.capacity), updated_at=time.time()))
            else:
                row.capacity = dict(pool.capacity)
                row.updated_at = time.time()
        return Pool(capacity=dict(pool.capacity))

    @staticmethod
    def _current_resources(session: Session) -> tuple[str, ...]:
        row = session.get(PoolRow, 1)
        return DEFAULT_RESOURCES if row is None else tuple(row.capacity)

    # --- tokens ---

    def create_token(self, group: str) -> str:
        """A new token scoped to ``group``; only its hash is kept, so this is the one chance."""
        token = secrets.token_urlsafe(32)
        with self._session() as session:
            session.add(
                TokenRow(token_sha256=_hash_token(token), group=group, created_at=time.time())
            )
        return token

    def token_group(self, token: str) -> str | None:
        query = select(TokenRow.group).where(TokenRow.token_sha256 == _hash_token(token))
        with self._session() as session:
            return session.scalar(query)

    def revoke_tokens(self, group: str) -> int:
        """Revoke every token of ``group``; returns how many there were."""
        with self._session() as session:
            statement = delete(TokenRow).where(TokenRow.group == group)
            result = cast(CursorResult[Any], session.execute(statement))
            return int(result.rowcount)
