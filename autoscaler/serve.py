"""``autoscaler serve`` and ``autoscaler db upgrade``: settings from flags, then the server.

Flags mirror the settings and fall back to their environment variables (``AUTOSCALER_HOST``,
``AUTOSCALER_PORT``, ``AUTOSCALER_DATABASE_URL``, ``AUTOSCALER_INTERVAL``,
``AUTOSCALER_ADMIN_TOKEN``, ``AUTOSCALER_INSECURE``), then to the defaults in ``Settings``.
Every failure to start is a ``ConfigError`` (the CLI prints it as one line and exits 2).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from autoscaler.api import check_access
from autoscaler.errors import ConfigError
from autoscaler.service import create_service
from autoscaler.settings import Settings
from autoscaler.store import Store

log = logging.getLogger(__name__)

FLAG_FIELDS = ("host", "port", "database_url", "interval", "admin_token", "insecure", "dry_run")


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL [AUTOSCALER_DATABASE_URL, sqlite:///./autoscaler.db]"
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on [AUTOSCALER_HOST, 127.0.0.1]")
    parser.add_argument(
        "--port", type=int, help="port to listen on, 0: any [AUTOSCALER_PORT, 8000]"
    )
    add_database_argument(parser)
    parser.add_argument(
        "--interval", type=float, help="seconds between two cycles [AUTOSCALER_INTERVAL, 10]"
    )
    parser.add_argument(
        "--admin-token", help="bearer token with full rights [AUTOSCALER_ADMIN_TOKEN]"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve without an admin token: every request acts as admin [AUTOSCALER_INSECURE]",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="decide and record, but scale nothing [AUTOSCALER_DRY_RUN]",
    )


def build_settings(args: argparse.Namespace) -> Settings:
    """Settings from the flags given in ``args``, then the environment, then the defaults."""
    overrides: dict[str, Any] = {
        field: getattr(args, field)
        for field in FLAG_FIELDS
        if getattr(args, field, None) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid URL>"


def open_store(settings: Settings) -> Store:
    """The store at ``settings.database_url``, migrated to the latest schema."""
    store = Store(settings.database_url)
    try:
        store.upgrade()
    except SQLAlchemyError as exc:
        store.close()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"database {safe_url(settings.database_url)}: {reason}") from exc
    return store


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(settings: Settings) -> int:
    """Run the API until SIGINT/SIGTERM; the control loop joins the app's lifespan.

    uvicorn shuts down gracefully on a signal, then raises it again with the handlers it found:
    ours turns it into a normal exit (status 0) that still closes the store.
    """
    configure_logging()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _stop)
    check_access(settings)  # before touching the database or the port
    sock = listen(settings.host, settings.port)
    try:
        store = open_store(settings)
        try:
            app = create_service(settings, store)
            config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on")
            server = uvicorn.Server(config)
            host, port = sock.getsockname()[:2]
            log.info(
                "serving the API on http://%s:%d (database %s)",
                host,
                port,
                safe_url(settings.database_url),
            )
            server.run(sockets=[sock])
        finally:
            store.close()
    finally:
        sock.close()
    return 0


def upgrade_database(settings: Settings) -> int:
    """``autoscaler db upgrade``: apply the migrations, then say so."""
    open_store(settings).close()
    print(f"database {safe_url(settings.database_url)} is at the latest schema")
    return 0
