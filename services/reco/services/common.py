"""What the services share: stopping the process when a worker thread dies."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)


def stop_process(exc: BaseException) -> None:
    """Ask uvicorn to shut down (SIGTERM to ourselves): a service whose consumer loop died
    must not linger as a healthy-looking process; its supervisor restarts it."""
    log.critical("stopping the service: %s", exc)
    os.kill(os.getpid(), signal.SIGTERM)
