"""The root of the engine's exceptions; each package adds its own below it."""


class RecoError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(RecoError):
    """A setting is missing or inconsistent; the message says which and how to fix it."""


class BackendUnavailable(RecoError):
    """A backend (event log, feature store, catalog) cannot be reached right now; retry later."""


class BackendFailed(RecoError):
    """A backend client is broken beyond retrying (a fatal Kafka error); the process must
    restart to recreate it."""
