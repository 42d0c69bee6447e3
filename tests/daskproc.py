"""Real Dask schedulers and workers for tests: the same helpers the demo uses."""

from autoscaler.demo.processes import (
    HTTP_ROUTES,
    SchedulerProcess,
    dask_env,
    start_scheduler,
    start_worker,
    stop_process,
)

__all__ = [
    "HTTP_ROUTES",
    "SchedulerProcess",
    "dask_env",
    "start_scheduler",
    "start_worker",
    "stop_process",
]
