"""API keys and rate limits, as FastAPI dependencies.

Two kinds of key: write keys (``RECO_API_KEYS``) for ``POST /events`` and catalog writes,
and read keys (``RECO_READ_API_KEYS``) for everything else; a write key also reads. An empty
list leaves that kind of access open, which is the default for a laptop. Keys travel as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and are compared in constant time;
they are ``SecretStr`` in the settings so that no log line or repr shows them.

Rate limits are per client (its key, else its address), per replica: a sliding-window
counter in memory, ``RECO_RATE_LIMIT`` requests per second (0 turns it off).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from limits import RateLimitItemPerSecond, storage, strategies
from pydantic import SecretStr


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def _matches(key: str, keys: Sequence[SecretStr]) -> bool:
    # Compare against every key so the time taken does not tell which one nearly matched.
    found = False
    for candidate in keys:
        found |= secrets.compare_digest(key.encode(), candidate.get_secret_value().encode())
    return found


@dataclass(frozen=True)
class AccessPolicy:
    write_keys: tuple[SecretStr, ...] = ()
    read_keys: tuple[SecretStr, ...] = ()

    def check(self, request: Request, *, write: bool) -> None:
        needed = self.write_keys if write else self.write_keys + self.read_keys
        open_access = not self.write_keys if write else not (self.write_keys or self.read_keys)
        if open_access:
            return
        key = _presented_key(request)
        if key is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "an API key is required: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if _matches(key, needed):
            return
        if write and _matches(key, self.read_keys):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "this key may read but not write; use a write key"
            )
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the API key is not valid",
            headers={"WWW-Authenticate": "Bearer"},
        )


class RateLimiter:
    def __init__(self, per_second: float) -> None:
        self._enabled = per_second > 0
        self._item = RateLimitItemPerSecond(max(1, math.ceil(per_second)))
        self._limiter = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())

    def check(self, request: Request) -> None:
        if not self._enabled:
            return
        client = _client_id(request)
        if not self._limiter.hit(self._item, client):
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"rate limit of {self._item.amount} requests per second exceeded; slow down",
                headers={"Retry-After": "1"},
            )


def _client_id(request: Request) -> str:
    key = _presented_key(request)
    if key is not None:
        # A hash, so that the limiter's storage never holds a key.
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return "ip:" + (request.client.host if request.client else "unknown")


async def require_write(request: Request) -> None:
    """Dependency of the routes that change state."""
    request.app.state.access.check(request, write=True)
    request.app.state.rate_limiter.check(request)


async def require_read(request: Request) -> None:
    """Dependency of the routes that only read."""
    request.app.state.access.check(request, write=False)
    request.app.state.rate_limiter.check(request)
