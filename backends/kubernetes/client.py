"""Kubernetes API calls through kr8s, with retries and errors translated at the boundary.

kr8s does not retry (except 401/403, by re-reading credentials), so this module does:

- 429 and 5xx, timeouts, refused connections: retried with exponential backoff, honouring the
  server's ``Retry-After`` (seconds or an HTTP date, capped), then ``TransientBackendError``;
- 409 Conflict: ``ConflictError``, for the caller to re-read the object and try again
  (``KubeClient.update`` does exactly that);
- 404: ``ObjectGone``, a ``BackendError`` naming the object;
- 422 and any other status: ``BackendError`` with the server's message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kr8s
import kr8s.asyncio

from autoscaler.errors import BackendError, ConfigError, TransientBackendError
from autoscaler.settings import Settings

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 10.0  # seconds allowed for one API call
Json = dict[str, Any]
Sleep = Callable[[float], Awaitable[None]]


class ObjectGone(BackendError):
    """The object (the cluster's workload) does not exist: 404."""


class ConflictError(TransientBackendError):
    """409: the object changed since it was read; re-read it and try again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard to retry throttled (429) and failed (5xx, network) calls, and conflicts (409)."""

    attempts: int = 4  # calls in all, the first included
    base_delay: float = 0.25  # seconds, doubled after each failure
    max_delay: float = 10.0  # cap of one wait, Retry-After included
    conflict_attempts: int = 5  # read-modify-write rounds on 409

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return min(self.base_delay * 2**attempt, self.max_delay)


def retry_after(response: httpx.Response | None) -> float | None:
    """Seconds asked by a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _is_file(path: str) -> bool:
    return Path(path).expanduser().is_file()


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT / "token").is_file()


async def connect(settings: Settings) -> kr8s.asyncio.Api:
    """``AUTOSCALER_KUBECONFIG`` if set, else in-cluster credentials, else default kubeconfig."""
    try:
        if settings.kubeconfig:
            if not await asyncio.to_thread(_is_file, settings.kubeconfig):
                raise ConfigError(f"AUTOSCALER_KUBECONFIG: no such file {settings.kubeconfig!r}")
            return await kr8s.asyncio.api(kubeconfig=settings.kubeconfig)
        if await asyncio.to_thread(_in_cluster):
            # kr8s tries a kubeconfig before the service account; naming one that does not
            # exist makes it go straight to the in-cluster credentials.
            return await kr8s.asyncio.api(
                kubeconfig=str(SERVICE_ACCOUNT / "no-kubeconfig"),
                serviceaccount=str(SERVICE_ACCOUNT),
            )
        return await kr8s.asyncio.api()
    except (ValueError, KeyError, OSError) as exc:  # kr8s: no or unreadable credentials
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"no usable Kubernetes credentials ({exc}); set AUTOSCALER_KUBECONFIG or run "
            "in a pod with a service account"
        ) from exc
    except (httpx.TransportError, kr8s.ServerError, kr8s.APITimeoutError) as exc:
        raise TransientBackendError(f"Kubernetes API unreachable: {exc!r}") from exc


class KubeClient:
    """Thin JSON calls on one kr8s ``Api`` (connected on first use)."""

    def __init__(
        self, settings: Settings, *, retry: RetryPolicy | None = None, sleep: Sleep | None = None
    ) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self._sleep = sleep or asyncio.sleep
        self._api: kr8s.asyncio.Api | None = None
        self._connecting = asyncio.Lock()

    async def api(self) -> kr8s.asyncio.Api:
        async with self._connecting:
            if self._api is None:
                api = await connect(self.settings)
                api.timeout = REQUEST_TIMEOUT  # kr8s's default is none: a hung call would hang
                self._api = api
            return self._api

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Json:
        return await self.request("GET", path, params=params)

    async def patch(self, path: str, body: Json) -> Json:
        """A JSON merge patch (``application/merge-patch+json``)."""
        return await self.request("PATCH", path, body=body)

    async def update(
        self, path: str, change: Callable[[Json], Json | None], *, read_path: str | None = None
    ) -> Json | None:
        """Read, compute a merge patch, apply it guarded by the read ``resourceVersion``.

        ``change`` returns the patch, or None when nothing needs to change. On 409 the object
        is read again and ``change`` called again, up to ``retry.conflict_attempts`` times.
        """
        for _ in range(self.retry.conflict_attempts):
            current = await self.get(read_path or path)
            body = change(current)
            if body is None:
                return current
            version = current.get("metadata", {}).get("resourceVersion")
            if version:
                meta = {**body.get("metadata", {}), "resourceVersion": version}
                body = {**body, "metadata": meta}
            try:
                return await self.patch(path, body)
            except ConflictError:
                log.info("PATCH %s conflicted; reading it again", path)
        raise TransientBackendError(
            f"PATCH {path} kept conflicting with other writers "
            f"({self.retry.conflict_attempts} attempts)"
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Json | None = None,
    ) -> Json:
        version, _, rest = path.lstrip("/").partition("/")  # "api" or "apis", then the rest
        base = f"/{version}"
        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = dict(params)
        if body is not None:
            kwargs["content"] = json.dumps(body).encode()
            kwargs["headers"] = {"Content-Type": MERGE_PATCH}
        attempts = self.retry.attempts
        problem, last = "", None
        for attempt in range(attempts):
            api = await self.api()
            wait: float | None = None
            try:
                # kr8s joins base/version/url; an empty version keeps our full path as is.
                async with api.call_api(method, version="", base=base, url=rest, **kwargs) as r:
                    return r.json() if r.content else {}
            except kr8s.ServerError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                message = _message(exc)
                problem = f"{method} {path} answered {status}: {message}"
                if status == 404:
                    raise ObjectGone(problem) from exc
                if status == 409:
                    raise ConflictError(problem) from exc
                if status in (401, 403):
                    raise BackendError(
                        f"{problem} (does the service account have the Role in "
                        "docs/kubernetes-role.yaml?)"
                    ) from exc
                if status != 429 and status < 500:
                    raise BackendError(problem) from exc
                wait, last = retry_after(exc.response), exc
            except kr8s.APITimeoutError as exc:
                problem, last = f"{method} {path} timed out", exc
            except httpx.TransportError as exc:
                problem, last = f"{method} {path} failed: {exc!r}", exc
            except ValueError as exc:  # a body that is not JSON
                raise BackendError(f"{method} {path} answered with invalid JSON") from exc
            if attempt + 1 < attempts:
                delay = self.retry.delay(attempt, wait)
                log.info("%s; retrying in %.2f s", problem, delay)
                await self._sleep(delay)
        raise TransientBackendError(f"{problem} (gave up after {attempts} attempts)") from last

    async def close(self) -> None:
        api, self._api = self._api, None
        session = getattr(api, "_session", None)  # kr8s has no public close
        if session is not None:
            await session.aclose()


def _message(exc: kr8s.ServerError) -> str:
    status = exc.status
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])[:300]
    return str(exc)[:300]
