"""The one interface every platform implements, and the graceful scale-down they all share."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoscaler.domain import ClusterSpec
from autoscaler.errors import ConfigError, RetireMismatch
from autoscaler.settings import Settings
from backends.retire import SchedulerAPI, choose_retirees


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleResult:
    """What one ``Backend.scale`` call did."""

    target: int  # what was asked
    current: int  # workers running on the platform after the call
    started: tuple[str, ...] = ()  # worker names started
    retired: tuple[str, ...] = ()  # worker names retired by the scheduler and removed
    skipped: tuple[str, ...] = ()  # asked to retire, kept by the scheduler (unique data)
    message: str = ""
    # Workers asked of the platform but not running yet (e.g. pods not Ready); not in `current`.
    pending: int = 0
    # Of `pending`, those the platform says it cannot place (e.g. pods Unschedulable).
    unschedulable: int = 0


class BackendOptions(BaseModel):
    """Options every backend accepts in ``ClusterSpec.backend_options``; backends extend it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    retire_timeout: float = Field(
        120.0, gt=0, le=3600, description="Seconds the scheduler may take to retire workers."
    )


class Backend(ABC):
    """A platform that runs the Dask workers of many clusters.

    Callers (the control loop, the API) use only:

    - ``validate_options(options)``: check a cluster's ``backend_options`` before it is
      stored; returns them normalized or raises ``ConfigError`` with a readable message.
    - ``workers(cluster)``: names of the workers the platform runs for the cluster, in start
      order (oldest first). Workers still starting count: they occupy the pool.
    - ``scale(cluster, target)``: idempotent reconcile to ``target`` workers; returns a
      ``ScaleResult``. Scale-up starts the missing workers. Scale-down is always graceful:
      the scheduler is asked to retire exactly the surplus (``choose_retirees``: least data,
      then most recent), and only the workers it reports retired are removed from the
      platform. A worker it keeps (unique data that cannot move) stays, is reported in
      ``skipped`` and is simply asked again next cycle. If the scheduler reports retiring a
      worker that was not asked, nothing more is removed and ``RetireMismatch`` is raised.
      Calls for one cluster are serialized.
    - ``close()``: release clients; workers keep running.
    - ``shutdown()``: the service is stopping; backends that own worker processes retire and
      stop them; the default is ``close()``.

    Errors: ``TransientBackendError`` (retry with backoff: timeouts, refused connections,
    429/5xx), ``BackendError`` (not worth retrying as is), ``ConfigError`` (bad options).

    A platform implements ``name``, ``Options`` (a ``BackendOptions`` subclass),
    ``workers``, ``_start_workers`` and ``_remove_workers``; and registers with
    ``@backends.registry.register``.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    def __init__(self, settings: Settings, *, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http = http
        self._owns_http = http is None
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``options`` normalized, or raise ``ConfigError`` saying what is wrong."""
        return cls.parse_options(options).model_dump(mode="json", exclude_unset=True)

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> BackendOptions:
        if not isinstance(options, Mapping):
            raise ConfigError(f"backend_options must be an object, got {type(options).__name__}")
        try:
            return cls.Options.model_validate(dict(options))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'options'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigError(f"invalid backend_options for '{cls.name}': {problems}") from exc

    @abstractmethod
    async def workers(self, cluster: ClusterSpec) -> tuple[str, ...]:
        """Names of the workers the platform runs for ``cluster``, oldest first."""

    @abstractmethod
    async def _start_workers(self, cluster: ClusterSpec, count: int) -> tuple[str, ...]:
        """Start ``count`` workers; return their names."""

    @abstractmethod
    async def _remove_workers(self, cluster: ClusterSpec, names: tuple[str, ...]) -> None:
        """Remove workers the scheduler has retired (and only those) from the platform."""

    async def scale(self, cluster: ClusterSpec, target: int) -> ScaleResult:
        if target < 0:
            raise ConfigError(f"target must be >= 0, got {target}")
        async with self._locks.setdefault(cluster.name, asyncio.Lock()):
            running = await self.workers(cluster)
            if target > len(running):
                started = await self._start_workers(cluster, target - len(running))
                current = len(await self.workers(cluster))
                return ScaleResult(
                    target=target,
                    current=current,
                    started=started,
                    message=f"started {len(started)}",
                )
            if target == len(running):
                return ScaleResult(target=target, current=target, message="at target")
            return await self._scale_down(cluster, target, running)

    async def _scale_down(
        self, cluster: ClusterSpec, target: int, running: tuple[str, ...]
    ) -> ScaleResult:
        options = self.parse_options(cluster.backend_options)
        api = SchedulerAPI(self.http, cluster.scheduler_url, retire_timeout=options.retire_timeout)
        surplus = len(running) - target
        chosen = choose_retirees(running, await api.get_workers(), surplus)
        outcome = await api.retire(chosen)
        retired = tuple(w.name for w in outcome.retired)
        if retired:
            await self._remove_workers(cluster, retired)
        current = len(await self.workers(cluster))
        if outcome.unexpected:
            raise RetireMismatch(
                f"scheduler {cluster.scheduler_url} retired workers that were not asked: "
                f"{', '.join(outcome.unexpected)}; removed only {', '.join(retired) or 'none'}"
            )
        notes = [f"retired {len(retired)} of {surplus}"]
        if len(chosen) < surplus:
            notes.append(f"{surplus - len(chosen)} not yet known to the scheduler")
        if outcome.skipped:
            kept = ", ".join(w.name for w in outcome.skipped)
            notes.append(f"scheduler kept {kept} (unique data could not move)")
        return ScaleResult(
            target=target,
            current=current,
            retired=retired,
            skipped=tuple(w.name for w in outcome.skipped),
            message="; ".join(notes),
        )

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client for scheduler calls (created on first use unless injected)."""
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    async def close(self) -> None:
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None

    async def shutdown(self) -> None:
        await self.close()
