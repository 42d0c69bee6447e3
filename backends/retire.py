"""Graceful retirement through a Dask scheduler's HTTP API, shared by every backend.

The scheduler's API (``distributed.http.scheduler.api``, off by default) answers:

- ``GET /api/v1/get_workers`` -> ``{"num_workers": N, "workers": [{"name": .., "address": ..}]}``
- ``POST /api/v1/retire_workers {"workers": [addresses]}`` -> ``{address: identity, ...}`` for
  the workers it retired. A worker whose unique data cannot move anywhere is silently left
  out of the answer; it keeps running and keeps its data.

``GET /json/identity.json`` (a default route) adds per-worker data sizes; it is read on a best
effort basis to prefer workers holding little data.

Errors are translated here: timeouts, refused connections, 429 and 5xx become
``TransientBackendError``; anything else (404 = API not enabled, garbage answers) becomes
``BackendError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from autoscaler.errors import BackendError, TransientBackendError

REQUEST_TIMEOUT = 10.0


@contextmanager
def translated_http_errors(action: str, peer: str, url: str) -> Iterator[None]:
    """Turn httpx's errors during ``action`` (e.g. "POST http://h/api") into our tree."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientBackendError(f"{action} timed out") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise BackendError(f"bad {peer} URL {url!r}: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransientBackendError(f"{peer} unreachable: {action} failed: {exc!r}") from exc
    except httpx.HTTPError as exc:
        raise BackendError(f"{action} failed: {exc!r}") from exc


API_HINT = (
    "enable the scheduler's HTTP API: add 'distributed.http.scheduler.api' to the config list "
    "distributed.scheduler.http.routes"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerWorker:
    """A worker as the scheduler knows it."""

    name: str
    address: str
    managed_bytes: int = 0  # bytes of results it holds (0 when unknown)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetireOutcome:
    """What was asked of the scheduler and what it did."""

    asked: tuple[SchedulerWorker, ...]
    retired: tuple[SchedulerWorker, ...]  # asked and retired: the only ones to remove
    skipped: tuple[SchedulerWorker, ...]  # asked, not retired (unique data could not move)
    unexpected: tuple[str, ...] = ()  # addresses retired although never asked


def choose_retirees(
    platform_names: Sequence[str], known: Mapping[str, SchedulerWorker], count: int
) -> tuple[SchedulerWorker, ...]:
    """Pick ``count`` workers to retire among the platform's workers the scheduler knows.

    ``platform_names`` is in start order, oldest first. The least data to move wins (a faster
    retirement that is less likely to be refused); ties go to the most recently started
    worker, so long-lived workers with warm caches stay. Workers unknown to the scheduler
    (still starting) are never chosen: only the scheduler may say a worker can go.
    """
    if count <= 0:
        return ()
    candidates = [
        (known[name].managed_bytes, -index, known[name])
        for index, name in enumerate(platform_names)
        if name in known
    ]
    candidates.sort(key=lambda item: item[:2])
    return tuple(worker for _, _, worker in candidates[:count])


class SchedulerAPI:
    """A thin client of one scheduler's HTTP API on a shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        scheduler_url: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
        retire_timeout: float = 120.0,
    ) -> None:
        self._client = client
        self._url = scheduler_url.rstrip("/")
        self._timeout = timeout
        self._retire_timeout = retire_timeout

    async def get_workers(self) -> dict[str, SchedulerWorker]:
        """Workers connected to the scheduler, by name, with data sizes when available."""
        body = await self._request("GET", "/api/v1/get_workers")
        try:
            listed = {str(w["name"]): str(w["address"]) for w in body["workers"]}
        except (TypeError, KeyError) as exc:
            raise BackendError(f"unexpected answer from {self._url}/api/v1/get_workers") from exc
        sizes = await self._managed_bytes()
        return {
            name: SchedulerWorker(name=name, address=address, managed_bytes=sizes.get(address, 0))
            for name, address in listed.items()
        }

    async def retire(self, workers: Sequence[SchedulerWorker]) -> RetireOutcome:
        """Ask the scheduler to retire exactly ``workers`` and compare its answer."""
        asked = tuple(workers)
        if not asked:
            return RetireOutcome(asked=(), retired=(), skipped=())
        body = await self._request(
            "POST",
            "/api/v1/retire_workers",
            payload={"workers": [w.address for w in asked]},
            read_timeout=self._retire_timeout,
        )
        if not isinstance(body, dict) or not all(isinstance(key, str) for key in body):
            raise BackendError(f"unexpected answer from {self._url}/api/v1/retire_workers")
        answered = set(body)
        asked_addresses = {w.address for w in asked}
        return RetireOutcome(
            asked=asked,
            retired=tuple(w for w in asked if w.address in answered),
            skipped=tuple(w for w in asked if w.address not in answered),
            unexpected=tuple(sorted(answered - asked_addresses)),
        )

    async def _managed_bytes(self) -> dict[str, int]:
        try:
            body = await self._request("GET", "/json/identity.json")
            workers = body["workers"]
            return {
                str(address): int(info.get("metrics", {}).get("managed_bytes", 0) or 0)
                for address, info in workers.items()
            }
        except (BackendError, TypeError, KeyError, ValueError, AttributeError):
            return {}  # sizes only refine the choice; the API answer is what counts

    async def _request(
        self,
        method: str,
        path: str,
        *,
        payload: Any = None,
        read_timeout: float | None = None,
    ) -> Any:
        url = self._url + path
        timeout = httpx.Timeout(self._timeout, read=read_timeout or self._timeout)
        with translated_http_errors(f"{method} {url}", "scheduler", self._url):
            response = await self._client.request(method, url, json=payload, timeout=timeout)
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            status = response.status_code
            problem = f"{method} {url} answered {status}"
            if status == 429 or status >= 500:
                raise TransientBackendError(problem) from exc
            if status == 404 and path.startswith("/api/"):
                raise BackendError(f"{problem}: {API_HINT}") from exc
            raise BackendError(problem) from exc
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise BackendError(f"{method} {url} answered with invalid JSON") from exc
