"""The root of the engine's exceptions; each package adds its own below it."""


class RecoError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(RecoError):
    """A setting is missing or inconsistent; the message says which and how to fix it."""


class BackendUnavailable(RecoError):
    """A backend (event log, feature store, catalog) cannot be reached right now; retry later."""


class BackendTimeout(BackendUnavailable):
    """A call to a backend did not complete within its timeout. ``backend`` and
    ``operation`` name it for the logs and the ``backend_timeouts_total`` counter."""

    def __init__(self, backend: str, operation: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend
        self.operation = operation


class BackendFailed(RecoError):
    """A backend client is broken beyond retrying (a fatal Kafka error); the process must
    restart to recreate it."""
