"""All settings of the service: one typed object, from flags, environment variables or a file.

Every field is read from ``AUTOSCALER_<FIELD>`` (case-insensitive), e.g. ``AUTOSCALER_PORT=8000``.
An optional dotenv-style file named by ``AUTOSCALER_ENV_FILE`` is read too.
"""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTOSCALER_",
        env_file=os.environ.get("AUTOSCALER_ENV_FILE"),
        extra="ignore",
    )

    # --- API server ---
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the API listens on.")
    admin_token: str | None = Field(None, description="Bearer token with full rights.")
    insecure: bool = Field(False, description="Allow serving without an admin token.")
    metrics_auth: bool = Field(False, description="Require the admin token on /metrics.")
    scheduler_url_allowlist: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Host patterns (fnmatch) a scheduler_url may point to.",
    )

    # --- store ---
    database_url: str = Field("sqlite:///./autoscaler.db", description="SQLAlchemy URL.")
    history_retention: float = Field(
        7 * 86400.0, gt=0, description="Seconds of decision history kept."
    )

    # --- control loop ---
    interval: float = Field(10.0, gt=0, description="Seconds between two cycles.")
    dry_run: bool = Field(False, description="Decide and record, but apply nothing.")
    scale_down_delay: float = Field(
        60.0, ge=0, description="Seconds a lower target must hold before scaling down."
    )
    scale_down_max_fraction: float = Field(
        0.5, gt=0, le=1, description="Largest fraction of workers removed in one cycle."
    )
    preemption_grace: float = Field(
        15.0, ge=0, description="Shortened scale-down delay when another cluster waits."
    )
    apply_concurrency: int = Field(32, ge=1, description="Backend calls in flight.")
    apply_retries: int = Field(3, ge=0, description="Retries of a transient backend error.")

    # --- observer ---
    observe_concurrency: int = Field(64, ge=1, description="Scheduler polls in flight.")
    observe_timeout: float = Field(2.0, gt=0, description="Seconds allowed for one poll.")
    observe_max_bytes: int = Field(1 << 20, gt=0, description="Largest response accepted.")
    usage_interval: float = Field(
        60.0, ge=0, description="Seconds between two polls of a scheduler's worker usage."
    )
    stale_after: int = Field(3, ge=1, description="Consecutive failed polls before stale.")
    max_desired_workers: int = Field(10_000, ge=0, description="Clamp of desired workers.")

    # --- backends ---
    kubeconfig: str | None = Field(None, description="Kubeconfig path for Kubernetes.")
    local_state_dir: str | None = Field(
        None, description="Folder where the local backend records its worker processes."
    )
