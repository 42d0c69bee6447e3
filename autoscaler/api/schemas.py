"""Request and response bodies of the REST API (``XCreate``, ``XUpdate``, ``XPublic``).

Request bodies are strict (no "5" for 5, no true for 1) and refuse unknown fields. Sizes are
numbers of bytes or strings such as "16GiB" (``autoscaler.units.parse_quantity``); answers always
carry plain numbers (memory in bytes).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any, Self, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic import model_validator as _model_validator

from autoscaler.domain import ClusterSpec, Decision, Pool
from autoscaler.units import parse_quantity

MAX_WORKERS = 1_000_000
MAX_QUANTITY = 1e18
MAX_RESOURCES = 32
MAX_OPTIONS_BYTES = 16_384

# DNS label (RFC 1123): what Kubernetes accepts as a name, so any backend can use it.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=NAME_PATTERN)]
ResourceName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9_./-]*$")
]
Quantity = Annotated[
    int | float | Annotated[str, StringConstraints(max_length=32)],
    Field(description='A number, or a size such as "16GiB" or "512MB" (bytes).'),
]
Number = int | float
Resources = Annotated[dict[ResourceName, Quantity], Field(min_length=1, max_length=MAX_RESOURCES)]
SchedulerUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048),
    Field(description="HTTP(S) base URL of the scheduler's dashboard (serves /metrics)."),
]
Weight = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
Workers = Annotated[int, Field(ge=0, le=MAX_WORKERS)]
Tier = Annotated[int, Field(ge=0, le=1000, description="0 = production, served first.")]


def _number(value: float) -> Number:
    return int(value) if float(value).is_integer() else float(value)


def parse_resources(resources: dict[str, Any], *, positive: bool) -> dict[str, Number]:
    parsed = {name: parse_quantity(value) for name, value in resources.items()}
    for name, value in parsed.items():
        if value > MAX_QUANTITY:
            raise ValueError(f"{name}: {value:g} is larger than {MAX_QUANTITY:g}")
    if positive and not any(parsed.values()):
        raise ValueError("at least one resource must be above 0")
    return {name: _number(value) for name, value in parsed.items()}


def check_scheduler_url(url: str | None) -> str | None:
    if url is None:  # only ClusterUpdate allows it, to say "null is refused" itself
        return None
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("scheduler_url may not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("scheduler_url must start with http:// or https://")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"scheduler_url has an invalid port: {exc}") from None
    if not parts.hostname:
        raise ValueError("scheduler_url has no host")
    return url


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(options)) > MAX_OPTIONS_BYTES:
        raise ValueError(f"backend_options is larger than {MAX_OPTIONS_BYTES} bytes of JSON")
    return options


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ClusterCreate(_Request):
    name: Name
    scheduler_url: SchedulerUrl
    backend: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    backend_options: dict[str, Any] = Field(default_factory=dict)
    worker: Resources = Field(description="Resources of ONE worker, by pool resource name.")
    minimum: Workers = 0
    maximum: Workers | None = None
    weight: Weight = 1.0
    tier: Tier = 0
    group: Name | None = Field(None, description="Tenant; defaults to the caller's group.")

    _url = field_validator("scheduler_url")(check_scheduler_url)
    _options = field_validator("backend_options")(check_options)

    @field_validator("worker")
    @classmethod
    def _worker(cls, worker: dict[str, Any]) -> dict[str, Number]:
        return parse_resources(worker, positive=True)

    @_model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) is above maximum ({self.maximum})")
        return self

    def to_spec(self, group: str) -> ClusterSpec:
        return ClusterSpec(
            name=self.name,
            scheduler_url=self.scheduler_url,
            backend=self.backend,
            backend_options=self.backend_options,
            worker=cast(dict[str, float], self.worker),  # numbers after validation
            minimum=self.minimum,
            maximum=self.maximum,
            weight=self.weight,
            tier=self.tier,
            group=group,
        )


class ClusterUpdate(_Request):
    """Any field but ``name``; ``null`` is accepted only for ``maximum`` (no upper bound)."""

    scheduler_url: SchedulerUrl | None = None
    backend: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    backend_options: dict[str, Any] | None = None
    worker: Resources | None = None
    minimum: Workers | None = None
    maximum: Workers | None = None
    weight: Weight | None = None
    tier: Tier | None = None
    group: Name | None = None

    _url = field_validator("scheduler_url")(check_scheduler_url)
    _options = field_validator("backend_options")(check_options)

    @field_validator("worker")
    @classmethod
    def _worker(cls, worker: dict[str, Any] | None) -> dict[str, Number] | None:
        return None if worker is None else parse_resources(worker, positive=True)

    @_model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(
            f for f in self.model_fields_set if f != "maximum" and getattr(self, f) is None
        )
        if nulls:
            raise ValueError(f"may not be null: {', '.join(nulls)}")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class ClusterPublic(BaseModel):
    name: str
    scheduler_url: str
    backend: str
    backend_options: dict[str, Any]
    worker: dict[str, Number]
    minimum: int
    maximum: int | None
    weight: float
    tier: int
    group: str

    @classmethod
    def from_spec(cls, spec: ClusterSpec) -> ClusterPublic:
        return cls.model_validate(asdict(spec))


class PoolUpdate(_Request):
    capacity: Resources

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, capacity: dict[str, Any]) -> dict[str, Number]:
        return parse_resources(capacity, positive=False)


class PoolPublic(BaseModel):
    resources: list[str] = Field(description="Resource names a worker may use.")
    capacity: dict[str, Number] | None = Field(
        description="Capacity by resource (memory in bytes); null until a pool is set."
    )

    @classmethod
    def from_pool(cls, pool: Pool | None, resources: tuple[str, ...]) -> PoolPublic:
        if pool is None:
            return cls(resources=list(resources), capacity=None)
        return cls(resources=list(pool.resources), capacity=dict(pool.capacity))


class AllocationPublic(BaseModel):
    cluster: str
    desired: int = Field(description="Workers the scheduler asked for (clamped).")
    allocated: int = Field(description="The fair (DRF) allocation.")
    target: int = Field(description="Workers applied after damping (or that would be, dry-run).")
    current: int = Field(description="Workers observed when deciding.")
    dominant_share: float
    reason: str
    decided_at: float = Field(description="Unix seconds.")
    applied: bool = Field(description="False in dry-run, or when the backend call failed.")
    error: str | None = Field(None, description="Why applying failed, if it did.")

    @classmethod
    def from_decision(cls, decision: Decision) -> AllocationPublic:
        return cls.model_validate(asdict(decision))


class TokenCreate(_Request):
    group: Name


class TokenPublic(BaseModel):
    token: str = Field(description="Shown once: only its hash is stored.")
    group: str


class Problem(BaseModel):
    detail: str
