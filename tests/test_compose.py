"""docker-compose.yml cannot start here (no Docker engine): it parses and agrees with the code."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml
from sqlalchemy import make_url

from autoscaler.cli import build_parser
from autoscaler.demo.processes import HTTP_ROUTES
from autoscaler.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_dependency_is_a_service():
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_autoscaler_environment_is_valid_settings(monkeypatch):
    environment = dict(SERVICES["autoscaler"]["environment"])
    environment["AUTOSCALER_ADMIN_TOKEN"] = "a-token-from-the-shell-environment"
    for key in [k for k in os.environ if k.startswith("AUTOSCALER_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    unknown = {
        k for k in environment if k.lower().removeprefix("autoscaler_") not in Settings.model_fields
    }
    assert not unknown, f"settings the code does not know: {unknown}"
    settings = Settings()
    assert settings.scheduler_url_allowlist == ["scheduler-a", "scheduler-b"]
    assert f"{settings.port}:{settings.port}" in SERVICES["autoscaler"]["ports"]
    # the database URL names the postgres service and its credentials
    url = make_url(settings.database_url)
    postgres = SERVICES["postgres"]["environment"]
    assert url.host == "postgres" and url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert set(settings.scheduler_url_allowlist) <= set(SERVICES)


def test_schedulers_enable_the_http_api_the_backends_use():
    for name in ("scheduler-a", "scheduler-b"):
        environment = SERVICES[name]["environment"]
        routes = json.loads(environment["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"])
        assert routes == HTTP_ROUTES
        assert "prometheus" in environment["EXTRA_PIP_PACKAGES"].replace("-", "")


def test_image_runs_a_real_cli_command():
    dockerfile = (ROOT / "Dockerfile").read_text()
    command = json.loads(re.search(r"^CMD (.+)$", dockerfile, re.MULTILINE).group(1))
    assert command[0] == "autoscaler"
    assert build_parser().parse_args(command[1:]).command == "serve"
    for package in ("autoscaler", "drf", "backends", "simulations"):
        assert f"COPY {package} ./{package}" in dockerfile
