"""Replay a dataset into a running engine over HTTP: its items first, then its events.

Batches go as JSON arrays over one keep-alive connection. A batch that meets HTTP 429/502/503/504
or a connection failure is sent again after the server's ``Retry-After`` (or a short backoff),
a bounded number of times; but when the very first request finds nothing listening, the
replay ends at once (a wrong ``--url`` is not an outage to wait out). Delivery is at least
once: if a response is lost after the server took the batch, the retry delivers it again, so
give events an ``event_id`` where the engine must deduplicate.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import httpx
import orjson
from tqdm import tqdm

from reco.datasets import has_items, read_events, read_items
from reco.exceptions import RecoError

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0
"""A longer Retry-After is cut to this: a misconfigured server must not stall a replay for hours."""
BACKOFF_BASE_S = 0.5
LOGGED_REJECTIONS = 10
"""Rejections logged one by one; beyond that only the count is reported."""


class ReplayError(RecoError):
    """The engine refused a batch or stayed unavailable through every retry."""


@dataclass(frozen=True)
class ReplayReport:
    """What a replay delivered. ``seconds`` and ``events_per_s`` cover the event phase only."""

    sent: int
    accepted: int
    rejected: int
    seconds: float
    events_per_s: float
    items_sent: int = 0
    retries: int = 0


def replay(
    path: str | os.PathLike[str],
    fmt: str,
    url: str,
    *,
    batch_size: int = 500,
    api_key: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    items: bool = True,
    max_retries: int = 5,
    timeout: float = 30.0,
) -> ReplayReport:
    """PUT the dataset's items to ``{url}/items`` (when it has items and ``items`` is set), then
    POST its first ``limit`` events (all when None) to ``{url}/events``, ``batch_size`` a request.
    """
    _check_arguments(batch_size, limit, max_retries)
    events: Iterator[dict[str, Any]] = read_events(path, fmt)
    if limit is not None:
        events = islice(events, limit)
    with _client(url, api_key, timeout) as client:
        sender = _Sender(client, max_retries)
        items_sent = 0
        if items and has_items(fmt):
            items_sent = _send_items(sender, read_items(path, fmt), batch_size, progress)
        tally = _send_events(sender, events, batch_size, _bar(progress, "events", "ev", limit))
    report = tally.report(items_sent, sender.retries)
    logger.info(
        "replayed %s (%s) to %s: %d sent, %d accepted, %d rejected, %.0f events/s, %d items",
        path, fmt, url, report.sent, report.accepted, report.rejected, report.events_per_s,
        report.items_sent,
    )  # fmt: skip
    return report


def _check_arguments(batch_size: int, limit: int | None, max_retries: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    if max_retries < 0:
        raise ValueError(f"max_retries must not be negative, got {max_retries}")


def _client(url: str, api_key: str | None, timeout: float) -> httpx.Client:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)


def _bar(enabled: bool, desc: str, unit: str, total: int | None = None) -> Any:
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled)


def _batches(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def _send_items(
    sender: _Sender, items: Iterable[dict[str, Any]], batch_size: int, progress: bool
) -> int:
    sent = 0
    with _bar(progress, "items", "item") as bar:
        for batch in _batches(items, batch_size):
            sender.send("PUT", "/items", batch)
            sent += len(batch)
            bar.update(len(batch))
    return sent


def _send_events(
    sender: _Sender, events: Iterable[dict[str, Any]], batch_size: int, bar: Any
) -> _Tally:
    tally = _Tally()
    with bar:
        for batch in _batches(events, batch_size):
            response = sender.send("POST", "/events", batch)
            tally.add(len(batch), _ingest_result(response))
            bar.update(len(batch))
    tally.stop()
    return tally


class _Tally:
    """Counts of the event phase, and its clock."""

    def __init__(self) -> None:
        self.sent = self.accepted = self.rejected = 0
        self._start = time.perf_counter()
        self._seconds: float | None = None

    def add(self, size: int, result: tuple[int, list[dict[str, Any]]]) -> None:
        accepted, rejections = result
        if accepted + len(rejections) != size:
            logger.warning(
                "batch at event %d: %d events sent but the engine accounted for %d",
                self.sent, size, accepted + len(rejections),
            )  # fmt: skip
        for rejection in rejections:
            self._log_rejection(rejection)
        self.sent += size
        self.accepted += accepted

    def _log_rejection(self, rejection: dict[str, Any]) -> None:
        self.rejected += 1
        if self.rejected <= LOGGED_REJECTIONS:
            index = rejection.get("index")
            where = str(self.sent + index) if isinstance(index, int) else "?"
            logger.warning("event %s rejected: %s", where, rejection.get("error", "no reason"))

    def stop(self) -> None:
        self._seconds = time.perf_counter() - self._start

    def report(self, items_sent: int, retries: int) -> ReplayReport:
        seconds = self._seconds if self._seconds is not None else 0.0
        rate = self.sent / seconds if seconds > 0 else 0.0
        return ReplayReport(
            self.sent, self.accepted, self.rejected, seconds, rate, items_sent, retries
        )


def _ingest_result(response: httpx.Response) -> tuple[int, list[dict[str, Any]]]:
    """Parse ``{"accepted": n, "rejected": [{"index": i, "error": "..."}]}``."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    accepted = body.get("accepted") if isinstance(body, dict) else None
    rejected = body.get("rejected", []) if isinstance(body, dict) else None
    if not isinstance(accepted, int) or not isinstance(rejected, list):
        raise ReplayError(
            f"POST {response.url} answered {response.status_code} with an unexpected body "
            f"(expected {{'accepted': n, 'rejected': [...]}}): {response.text[:200]!r}"
        )
    return accepted, [r if isinstance(r, dict) else {"error": str(r)} for r in rejected]


class _Sender:
    """Sends one batch, retrying while the engine is unavailable."""

    def __init__(self, client: httpx.Client, max_retries: int) -> None:
        self.client = client
        self.max_retries = max_retries
        self.retries = 0
        self.answered = False

    def send(self, method: str, endpoint: str, batch: list[dict[str, Any]]) -> httpx.Response:
        body = orjson.dumps(batch)
        failure = ""
        for attempt in range(self.max_retries + 1):
            response, failure, wait = self._attempt(method, endpoint, body)
            if response is not None:
                self.answered = True
                return response
            if attempt < self.max_retries:
                self._pause(method, endpoint, failure, wait, attempt)
        raise ReplayError(
            f"{method} {self.client.build_request(method, endpoint).url} failed "
            f"{self.max_retries + 1} times, "
            f"last with {failure}; check that the engine is running and reachable at that URL"
        )

    def _attempt(
        self, method: str, endpoint: str, body: bytes
    ) -> tuple[httpx.Response | None, str, float | None]:
        try:
            response = self.client.request(method, endpoint, content=body)
        except httpx.ConnectError as error:
            if not self.answered:
                raise ReplayError(
                    f"nothing answers at {self.client.base_url} ({error}); start the engine "
                    "(reco dev) or give its address with --url"
                ) from None
            return None, f"{type(error).__name__}: {error}", None
        except httpx.TransportError as error:
            return None, f"{type(error).__name__}: {error}", None
        self.answered = True
        if response.status_code in RETRY_STATUSES:
            return None, f"HTTP {response.status_code}", _retry_after(response)
        _raise_for_status(method, response)
        return response, "", None

    def _pause(
        self, method: str, endpoint: str, failure: str, wait: float | None, attempt: int
    ) -> None:
        delay = wait if wait is not None else BACKOFF_BASE_S * 2**attempt
        delay = min(delay, MAX_RETRY_AFTER_S)
        self.retries += 1
        logger.warning(
            "%s %s: %s; retry %d/%d in %.1f s",
            method, endpoint, failure, attempt + 1, self.max_retries, delay,
        )  # fmt: skip
        time.sleep(delay)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), if usable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC without saying so
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - time.time())


def _raise_for_status(method: str, response: httpx.Response) -> None:
    if response.is_success:
        return
    hint = ""
    if response.status_code in (401, 403):
        hint = "; check the API key"
    elif response.status_code == 413:
        hint = "; use a smaller batch_size"
    raise ReplayError(
        f"{method} {response.url} answered HTTP {response.status_code}{hint}: "
        f"{response.text[:200]!r}"
    )
