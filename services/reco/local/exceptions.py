"""Errors of the local development servers and service processes."""

from reco.exceptions import RecoError


class ServerError(RecoError, RuntimeError):
    """A local server could not be installed, started or stopped; the message says why."""


class ServiceError(ServerError):
    """A service process of the local stack exited, did not become ready, or would not stop."""
