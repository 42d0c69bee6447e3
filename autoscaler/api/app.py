"""The FastAPI application: ``create_app(settings, store)``.

Domain errors are translated to HTTP answers in one place (``_domain_error``); routes never
raise ``HTTPException`` (only authentication, at the edge, answers 401).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from autoscaler import dashboard, metrics
from autoscaler.api.deps import StoreDep, authenticate
from autoscaler.api.routes import allocations, clusters, dashboard_data, pool, tokens
from autoscaler.api.schemas import Problem
from autoscaler.errors import AutoscalerError, ConfigError, Conflict, Forbidden, NotFound
from autoscaler.settings import Settings
from autoscaler.store import Store

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 1 << 20

_STATUS: tuple[tuple[type[AutoscalerError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Forbidden, 403),
    (ConfigError, 422),
)


def check_access(settings: Settings) -> None:
    """ConfigError if there is no admin token (or an empty one) and ``insecure`` is not set."""
    if not settings.admin_token and not settings.insecure:
        raise ConfigError(
            "no admin token: set AUTOSCALER_ADMIN_TOKEN (or --admin-token), "
            "or pass --insecure to let every request act as admin"
        )


def create_app(settings: Settings, store: Store, *, lifespan: Lifespan | None = None) -> FastAPI:
    """The REST API over ``store``; ConfigError without an admin token unless ``insecure``.

    ``lifespan`` runs around serving (the service starts its control loop there); without it
    ``app.state.loop`` is None.
    """
    check_access(settings)
    if settings.admin_token and len(settings.admin_token) < 16:
        log.warning(
            "the admin token is short (%d characters): use 32 or more", len(settings.admin_token)
        )
    if not settings.admin_token:
        log.warning(
            "INSECURE: no admin token is configured; EVERY REQUEST ACTS AS ADMIN. "
            "Set AUTOSCALER_ADMIN_TOKEN outside development."
        )
    app = FastAPI(
        title="Dask fair-share autoscaler",
        version="1",
        description="Registers Dask clusters and shares one pool among them (DRF).",
        lifespan=lifespan,
    )
    app.state.loop = None
    app.state.settings = settings
    app.state.store = store

    api = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(authenticate)],
        responses={
            400: {"model": Problem, "description": "A body that is not JSON"},
            401: {"model": Problem, "description": "Missing or invalid token"},
            413: {"model": Problem, "description": "A body larger than 1 MiB"},
        },
    )
    for module in (clusters, pool, allocations, tokens, dashboard_data):
        api.include_router(module.router)
    app.include_router(api)
    # the loop feeds it as a cycle listener: see service.py
    app.state.metrics = metrics.Metrics(store, require_token=settings.metrics_auth)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"], response_model=None)
    app.add_exception_handler(AutoscalerError, _domain_error)
    app.add_middleware(_BodyLimit)
    return app


def healthz(store: StoreDep) -> dict[str, str] | JSONResponse:
    """Liveness and database reachability; no token needed."""
    try:
        store.ping()
    except SQLAlchemyError:
        log.exception("health check: database unreachable")
        return JSONResponse({"status": "database unreachable"}, status_code=503)
    return {"status": "ok"}


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            if status == 422:  # the shape of FastAPI's own validation errors
                error = {"type": "value_error", "loc": ["body"], "msg": str(exc)}
                return JSONResponse({"detail": [error]}, status_code=422)
            return JSONResponse({"detail": str(exc)}, status_code=status)
    log.error("unhandled domain error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


class _BodyLimit:
    """413 for a request whose declared body is larger than ``MAX_BODY_BYTES``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                response = JSONResponse({"detail": "request body too large"}, status_code=413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
