"""Tables of the store (SQLAlchemy 2 typed ORM) and their mapping to the domain objects.

Times are unix seconds (floats), like the domain objects. Decisions and observations name their
cluster without a foreign key: the loop may record a cycle for a cluster deleted meanwhile, and
that must never fail the whole cycle. Deleting a cluster removes its history explicitly.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from autoscaler.domain import ClusterSpec, Decision

# Decision fields kept in the decision tables (``error`` only once the domain has it).
_DECISION_FIELDS = tuple(f.name for f in fields(Decision))

NAME_LENGTH = 63
URL_LENGTH = 2048

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid), not a BIGINT one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def unstorable(*values: str | None) -> bool:
    """True if a lookup value cannot be in the database (PostgreSQL text refuses NUL bytes)."""
    return any(value is not None and "\x00" in value for value in values)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, float: Double}


class ClusterRow(Base):
    __tablename__ = "clusters"
    __table_args__ = (
        CheckConstraint("minimum >= 0", name="ck_clusters_minimum"),
        CheckConstraint("maximum IS NULL OR maximum >= minimum", name="ck_clusters_maximum"),
        CheckConstraint("weight > 0", name="ck_clusters_weight"),
        Index("ix_clusters_group_tier", "group", "tier"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    group: Mapped[str] = mapped_column(String(NAME_LENGTH))
    scheduler_url: Mapped[str] = mapped_column(String(URL_LENGTH))
    backend: Mapped[str] = mapped_column(String(NAME_LENGTH))
    backend_options: Mapped[dict[str, Any]]
    worker: Mapped[dict[str, Any]]
    minimum: Mapped[int]
    maximum: Mapped[int | None]
    weight: Mapped[float]
    tier: Mapped[int]
    created_at: Mapped[float]
    updated_at: Mapped[float]

    def to_spec(self) -> ClusterSpec:
        return ClusterSpec(
            name=self.name,
            scheduler_url=self.scheduler_url,
            backend=self.backend,
            backend_options=dict(self.backend_options),
            worker=dict(self.worker),
            minimum=self.minimum,
            maximum=self.maximum,
            weight=self.weight,
            tier=self.tier,
            group=self.group,
        )


class PoolRow(Base):
    """The one pool: a single row (id 1); capacity keeps the order of its resources."""

    __tablename__ = "pool"
    __table_args__ = (CheckConstraint("id = 1", name="ck_pool_single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capacity: Mapped[dict[str, Any]]
    updated_at: Mapped[float]


class TokenRow(Base):
    """A group-scoped API token; only the sha256 of the token is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    group: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[float]


class _DecisionColumns:
    cluster: Mapped[str] = mapped_column(String(NAME_LENGTH))
    desired: Mapped[int]
    allocated: Mapped[int]
    target: Mapped[int]
    current: Mapped[int]
    dominant_share: Mapped[float]
    reason: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[float]
    applied: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)

    def to_decision(self) -> Decision:
        values = {column: getattr(self, column) for column in _DECISION_FIELDS}
        return Decision(**values)


class DecisionRow(_DecisionColumns, Base):
    """History: one row per cluster per cycle, bounded by the retention setting."""

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_cluster_decided_at", "cluster", "decided_at"),
        Index("ix_decisions_decided_at", "decided_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)


class LatestDecisionRow(_DecisionColumns, Base):
    """The latest decision of each cluster (upserted with the history), for /allocations."""

    __tablename__ = "latest_decisions"

    cluster: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)


class ObservationRowORM(Base):
    """The latest observation of each cluster (upserted every cycle)."""

    __tablename__ = "observations"

    cluster: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    observed_at: Mapped[float]
    desired: Mapped[int | None]
    current: Mapped[int | None]
    workers: Mapped[dict[str, Any]]
    tasks: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    stale: Mapped[bool] = mapped_column(Boolean)


def decision_values(decision: Decision) -> dict[str, Any]:
    values = {name: getattr(decision, name) for name in _DECISION_FIELDS}
    return {"error": None, **values}
