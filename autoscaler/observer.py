"""The observer; the code lives in the `autoscaler.observe` package."""

from autoscaler.observe import Observation, Observer, WorkerUsage

__all__ = ["Observation", "Observer", "WorkerUsage"]
