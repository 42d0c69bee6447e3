"""Databases for tests: a fresh SQLite file, or a fresh schema in a private PostgreSQL database;
and the REST API over each (``api``: an httpx client in the process, admin token).

The PostgreSQL server is ``AUTOSCALER_TEST_POSTGRES_URL`` (default: the local ``test`` database,
trust auth). Each test session creates its own database ``autoscaler_test_<random>`` (other
engineers' sessions run at the same time) and drops it at the end; each test gets a fresh schema
in it, migrated with Alembic. Nothing shared is ever dropped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from autoscaler.api import API_PREFIX, create_app
from autoscaler.settings import Settings
from autoscaler.store import Store

ADMIN_TOKEN = "test-admin-token"
POSTGRES_URL = os.environ.get(
    "AUTOSCALER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a PostgreSQL database private to this test session (dropped at the end)."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"autoscaler_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} (./dev test starts it): {exc}")
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgresql_url(postgres_database: str) -> Iterator[str]:
    """URL of an empty schema of its own (as the search path) in the session's database."""
    schema = f"t_{secrets.token_hex(6)}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(postgres_database).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'autoscaler.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each kind, migrated to the latest schema."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    store = Store(url)
    try:
        store.upgrade()
    finally:
        store.close()
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated ``Store`` over SQLite and over PostgreSQL."""
    store = Store(database_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def api_settings() -> Settings:
    return Settings(admin_token=ADMIN_TOKEN, scheduler_url_allowlist=["*"])


@pytest.fixture
def api_app(api_settings: Settings, store: Store) -> FastAPI:
    return create_app(api_settings, store)


ClientFactory = Callable[[str | None], httpx.AsyncClient]


@pytest.fixture
async def api_client_factory(api_app: FastAPI) -> AsyncIterator[ClientFactory]:
    """Clients of ``/api/v1`` in this process, with a bearer token (or none); all closed."""
    clients: list[httpx.AsyncClient] = []

    def client(token: str | None) -> httpx.AsyncClient:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        new = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api_app),
            base_url=f"http://testserver{API_PREFIX}",
            headers=headers,
        )
        clients.append(new)
        return new

    yield client
    for each in clients:
        await each.aclose()


@pytest.fixture
def api(api_client_factory: ClientFactory) -> httpx.AsyncClient:
    """An admin client of ``/api/v1``."""
    return api_client_factory(ADMIN_TOKEN)
