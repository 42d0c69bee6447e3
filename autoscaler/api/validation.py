"""Checks of a cluster that need more than its own fields: the allow-list, the backend, the pool."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from autoscaler.api.schemas import ClusterCreate
from autoscaler.domain import ClusterSpec
from autoscaler.errors import ConfigError
from autoscaler.settings import Settings
from backends import registry

log = logging.getLogger(__name__)


def host_allowed(url: str, patterns: list[str]) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(fnmatchcase(host, pattern.lower()) for pattern in patterns)


def check_cluster(
    spec: ClusterSpec, *, settings: Settings, resources: tuple[str, ...]
) -> ClusterSpec:
    """``spec`` with normalized backend options, or ConfigError saying what is wrong."""
    if not host_allowed(spec.scheduler_url, settings.scheduler_url_allowlist):
        raise ConfigError(
            f"scheduler_url: host {urlsplit(spec.scheduler_url).hostname!r} is not allowed "
            f"(allowed: {', '.join(settings.scheduler_url_allowlist) or 'none'})"
        )
    unknown = sorted(set(spec.worker) - set(resources))
    if unknown:
        raise ConfigError(
            f"worker: unknown resources {', '.join(unknown)}; "
            f"the pool's resources are {', '.join(resources)}"
        )
    backend = registry.get(spec.backend)
    try:
        options = backend.validate_options(spec.backend_options)
    except ConfigError:
        raise
    except Exception as exc:  # a bug in a (possibly third-party) backend: still the caller's 4xx
        log.exception("backend %r failed to validate its options", spec.backend)
        raise ConfigError(f"backend_options: rejected by backend {spec.backend!r}") from exc
    return replace(spec, backend_options=options)


def merge(current: ClusterSpec, changes: dict[str, Any]) -> ClusterSpec:
    """The cluster after ``changes``, re-validated as a whole (e.g. minimum <= maximum)."""
    merged = {**asdict(current), **changes}
    group = merged.pop("group")
    try:
        return ClusterCreate.model_validate(merged).to_spec(group)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'cluster'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(problems) from None
