"""The service: the REST API and the control loop in one process, sharing one store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from autoscaler.api import create_app
from autoscaler.loop import ControlLoop
from autoscaler.observe import Observer
from autoscaler.settings import Settings
from autoscaler.store import Store


@asynccontextmanager
async def running_loop(settings: Settings, store: Store) -> AsyncIterator[ControlLoop]:
    """A started control loop; on exit it stops and the backends shut down (workers retired)."""
    async with Observer.from_settings(settings) as observer:
        loop = ControlLoop(settings, store, observer)
        loop.start()
        try:
            yield loop
        finally:
            await loop.stop()


def create_service(settings: Settings, store: Store) -> FastAPI:
    """The API app whose lifespan runs the control loop (``app.state.loop``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running_loop(settings, store) as loop:
            app.state.loop = loop
            loop.on_cycle.append(app.state.metrics.observe_cycle)
            yield
            app.state.loop = None

    return create_app(settings, store, lifespan=lifespan)
