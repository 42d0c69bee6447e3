"""Databases for tests: a fresh SQLite file, or a fresh schema in a private PostgreSQL database.

The PostgreSQL server is ``AUTOSCALER_TEST_POSTGRES_URL`` (default: the local ``test`` database,
trust auth). Each test session creates its own database ``autoscaler_test_<random>`` (other
engineers' sessions run at the same time) and drops it at the end; each test gets a fresh schema
in it, migrated with Alembic. Nothing shared is ever dropped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from autoscaler.store import Store

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
