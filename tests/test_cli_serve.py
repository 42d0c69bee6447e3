"""``autoscaler serve`` and ``autoscaler db upgrade``: real processes, real HTTP, real databases."""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from autoscaler.cli import main
from autoscaler.serve import build_settings
from autoscaler.store import Store
from tests.test_api_clusters import body

STARTUP_DEADLINE = 60.0  # a safety net for a hung start, not a measurement
SERVING = re.compile(r"serving the API on (http://\S+:\d+)")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSCALER_")}
    return {**env, **extra}


class Server:
    """``autoscaler serve`` in a subprocess; its stderr is read by a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autoscaler.cli", "serve", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_url(self) -> str:
        while True:
            try:
                line = self.lines.get(timeout=STARTUP_DEADLINE)
            except queue.Empty:
                pytest.fail(f"the server did not start: {''.join(self.log)}")
            if line is None:
                pytest.fail(f"the server exited: {''.join(self.log)}")
            self.log.append(line)
            match = SERVING.search(line)
            if match:
                return match.group(1)

    def stop(self) -> int:
        """SIGTERM by pid (graceful), SIGKILL if it does not go."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        return self.process.returncode


StartServer = Callable[[list[str], dict[str, str]], Server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``autoscaler serve`` in ``tmp_path``; every server is stopped (by pid) at teardown."""
    started: list[Server] = []

    def start(args: list[str], env: dict[str, str]) -> Server:
        server = Server(args, env, tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("database", ["sqlite_url", "postgresql_url"])
def test_serve_answers_real_http(
    start_server: StartServer, request: pytest.FixtureRequest, database: str
) -> None:
    url: str = request.getfixturevalue(database)  # empty: serve migrates it at start
    env = clean_env(AUTOSCALER_ADMIN_TOKEN="cli-admin", AUTOSCALER_DATABASE_URL=url)
    server = start_server(["--port", "0", "--interval", "5"], env)
    base = server.wait_for_url()
    admin = {"Authorization": "Bearer cli-admin"}
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/api/v1/clusters").status_code == 401
        put = client.put(
            "/api/v1/pool", json={"capacity": {"cpu": 8, "memory": "32GiB"}}, headers=admin
        )
        assert put.status_code == 200, put.text
        token = client.post("/api/v1/tokens", json={"group": "team"}, headers=admin).json()["token"]
        mine = {"Authorization": f"Bearer {token}"}
        created = client.post("/api/v1/clusters", json=body(), headers=mine)
        assert created.status_code == 201, created.text
        assert created.json()["group"] == "team"
        assert [c["name"] for c in client.get("/api/v1/clusters", headers=admin).json()] == [
            "alpha"
        ]
    assert server.stop() == 0
    store = Store(url)
    try:
        assert [c.name for c in store.list_clusters()] == ["alpha"]
    finally:
        store.close()


def run_serve(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """``autoscaler serve`` expected to fail at start (killed if it does not end)."""
    command = [sys.executable, "-m", "autoscaler.cli", "serve", *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


def test_serve_refuses_without_admin_token(tmp_path: Path) -> None:
    returncode, stderr = run_serve(["--port", "0"], clean_env(), tmp_path)
    assert returncode == 2
    lines = stderr.splitlines()
    assert len(lines) == 1 and "admin token" in lines[0] and "--insecure" in lines[0], stderr
    assert list(tmp_path.iterdir()) == []  # nothing created: no database


def test_serve_insecure_warns_and_acts_as_admin(start_server: StartServer, sqlite_url: str) -> None:
    env = clean_env(AUTOSCALER_INSECURE="1", AUTOSCALER_DATABASE_URL=sqlite_url)
    server = start_server(["--port", "0"], env)
    base = server.wait_for_url()
    assert any("WARNING" in line and "INSECURE" in line for line in server.log), server.log
    with httpx.Client(base_url=base, timeout=30) as client:
        put = client.put("/api/v1/pool", json={"capacity": {"cpu": 8}})
        assert put.status_code == 200, put.text
    assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000", "--admin-token", "t"], "port"),
        (["--interval", "0", "--admin-token", "t"], "interval"),
        (["--port", "0", "--admin-token", "t", "--database-url", "nonsense://"], "database"),
        (
            [
                "--port",
                "0",
                "--admin-token",
                "t",
                "--database-url",
                "postgresql+psycopg://u:pw@127.0.0.1:1/x",
            ],
            "***",
        ),
    ],
)
def test_serve_start_errors_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    returncode, stderr = run_serve(args, clean_env(), tmp_path)
    assert returncode == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert "pw" not in stderr


def test_flags_override_env_which_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("AUTOSCALER_")]:
        monkeypatch.delenv(key)
    defaults = build_settings(argparse.Namespace())
    assert (defaults.host, defaults.port, defaults.interval) == ("127.0.0.1", 8000, 10.0)
    assert defaults.database_url == "sqlite:///./autoscaler.db"
    assert (defaults.admin_token, defaults.insecure) == (None, False)

    monkeypatch.setenv("AUTOSCALER_PORT", "9000")
    monkeypatch.setenv("AUTOSCALER_INSECURE", "1")
    monkeypatch.setenv("AUTOSCALER_ADMIN_TOKEN", "from-env")
    env = build_settings(argparse.Namespace(port=None, insecure=None))
    assert (env.port, env.insecure, env.admin_token) == (9000, True, "from-env")

    flags = build_settings(argparse.Namespace(port=9100, admin_token="flag", host="0.0.0.0"))
    assert (flags.port, flags.admin_token, flags.host, flags.insecure) == (
        9100,
        "flag",
        "0.0.0.0",
        True,
    )


def test_loop_settings_from_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoscaler.cli import build_parser

    for key in [k for k in os.environ if k.startswith("AUTOSCALER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AUTOSCALER_SCALE_DOWN_DELAY", "30")
    monkeypatch.setenv("AUTOSCALER_PREEMPTION_GRACE", "5")
    settings = build_settings(build_parser().parse_args(["serve", "--dry-run"]))
    assert (settings.dry_run, settings.scale_down_delay, settings.preemption_grace) == (
        True,
        30.0,
        5.0,
    )
    assert build_settings(build_parser().parse_args(["serve"])).dry_run is False


def test_db_upgrade(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--database-url", sqlite_url]) == 0
    assert "latest schema" in capsys.readouterr().out
    store = Store(sqlite_url)
    try:
        assert {"clusters", "pool", "api_tokens", "decisions", "observations"} <= set(
            inspect(store.engine).get_table_names()
        )
    finally:
        store.close()
    assert main(["db", "upgrade", "--database-url", "postgresql+psycopg://127.0.0.1:1/x"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
