"""The REST API under ``/api/v1``: clusters, pool, allocations, tokens; ``/healthz``."""

from autoscaler.api.app import API_PREFIX, check_access, create_app

__all__ = ["API_PREFIX", "check_access", "create_app"]
