"""Observe many Dask schedulers per cycle: desired workers, workers and tasks by state, usage.

Observer        polls the fleet through one bounded, time-limited, size-capped client
Observation     one cluster as seen by one poll (error set when the poll failed)
WorkerUsage     one worker's nthreads, memory_limit and memory in use
"""

from autoscaler.observe.model import Observation, WorkerUsage
from autoscaler.observe.observer import Observer

__all__ = ["Observation", "Observer", "WorkerUsage"]
