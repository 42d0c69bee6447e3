"""One exception tree for the whole service.

    AutoscalerError
    ├── ConfigError            bad settings or options; the message is safe to show users
    ├── NotFound               a cluster, token or object that does not exist
    ├── Conflict               a duplicate name or a concurrent change
    ├── Forbidden              the caller may not do this
    ├── ObserveError           a scheduler could not be polled (carried in an Observation)
    └── BackendError           a platform call failed
        ├── TransientBackendError   worth retrying with backoff (timeouts, 429, 5xx)
        └── RetireMismatch          the scheduler retired other workers than asked

Third-party errors are translated at the boundary with ``raise ... from exc``.
"""


class AutoscalerError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(AutoscalerError, ValueError):
    """Invalid settings, request fields or backend options."""


class NotFound(AutoscalerError, LookupError):
    """The named object does not exist (or is not visible to the caller)."""


class Conflict(AutoscalerError):
    """A duplicate name or a concurrent change."""


class Forbidden(AutoscalerError):
    """The caller is authenticated but may not do this."""


class ObserveError(AutoscalerError):
    """A scheduler could not be observed."""


class BackendError(AutoscalerError):
    """A platform call failed; not worth retrying as is."""


class TransientBackendError(BackendError):
    """A platform call failed in a way that may pass: retry with backoff."""


class RetireMismatch(BackendError):
    """The scheduler retired a different set of workers than the one asked for."""
