"""helm test for a RecoEngine: events into ingest, then recommendations from the api that
only those events can explain.

One user views two new items in one session, so the processor records them as viewed
together; a second user then views the first item, and the api must recommend the second to
them. That passes only when the whole path works: ingest accepted the events (Kafka has
them), the processor applied them to Redis, and the api read them back.

Standard library only: it runs in the engine image, which has Python and no curl.
Settings (environment): RECO_TEST_INGEST_URL, RECO_TEST_API_URL, RECO_TEST_TIMEOUT_S,
RECO_TEST_RECOENGINE (its name, for the hints), and
RECO_TEST_API_KEY / RECO_TEST_READ_API_KEY when the RecoEngine requires keys (the first of a
comma-separated list is used). Exit 0 on success, 1 with what failed and where to look.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

INGEST = os.environ["RECO_TEST_INGEST_URL"].rstrip("/")
API = os.environ["RECO_TEST_API_URL"].rstrip("/")
TIMEOUT_S = float(os.environ.get("RECO_TEST_TIMEOUT_S", "90"))
WRITE_KEY = os.environ.get("RECO_TEST_API_KEY", "").split(",")[0].strip()
READ_KEY = os.environ.get("RECO_TEST_READ_API_KEY", "").split(",")[0].strip()
NAME = os.environ.get("RECO_TEST_RECOENGINE", "<name>")


class Failed(Exception):
    """The check failed; the message says what and where to look."""


def call(method: str, url: str, body: Any = None, key: str = "") -> tuple[int, Any]:
    """(status, parsed JSON or text); a connection error is status 0 with its reason."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")[:500]


def post_events(events: list[dict[str, str]], deadline: float) -> None:
    """POST until ingest answers 202 for every event; it answers 503 while Kafka is not
    reachable yet, and the Service has no endpoint while ingest is starting."""
    url = f"{INGEST}/events"
    while True:
        status, body = call("POST", url, events, WRITE_KEY)
        if status == 202:
            accepted = body.get("accepted")
            if accepted != len(events):
                raise Failed(f"POST {url}: accepted {accepted} of {len(events)}: {body}")
            return
        if status in (401, 403, 413, 422):
            raise Failed(f"POST {url} answered {status}: {body}")
        if time.monotonic() > deadline:
            raise Failed(
                f"POST {url} did not answer 202 within {TIMEOUT_S:.0f} s (last: {status} {body}); "
                f"is ingest running and Kafka reachable? kubectl logs deploy/{NAME}-ingest"
            )
        time.sleep(1)


def wait_for_recommendation(user: str, item: str, deadline: float) -> dict[str, Any]:
    query = urllib.parse.urlencode({"user_id": user, "count": 10})
    url = f"{API}/recommendations?{query}"
    status: int = 0
    body: Any = None
    while time.monotonic() < deadline:
        status, body = call("GET", url, key=READ_KEY)
        if status in (401, 403):
            raise Failed(f"GET {url} answered {status}: {body}")
        if status == 200:
            for entry in body.get("items", []):
                # Only the co-view proves the path: while the newcomer's event is not yet
                # applied, a new item can also come back as merely "popular right now".
                together = any("viewed together" in r for r in entry.get("reasons", []))
                if entry.get("item_id") == item and together:
                    return dict(entry)
        time.sleep(1)
    raise Failed(
        f"GET {url} did not recommend {item} within {TIMEOUT_S:.0f} s (last: {status} {body}); "
        "events were accepted, so the processor or the api is behind: "
        f"kubectl logs deploy/{NAME}-processor and deploy/{NAME}-api"
    )


def main() -> int:
    run = uuid.uuid4().hex[:10]
    first, second = f"helm-test-{run}-a", f"helm-test-{run}-b"
    viewer, newcomer = f"helm-test-{run}-viewer", f"helm-test-{run}-newcomer"
    deadline = time.monotonic() + TIMEOUT_S
    started = time.monotonic()
    try:
        post_events(
            [
                {"user_id": viewer, "item_id": first, "type": "view"},
                {"user_id": viewer, "item_id": second, "type": "view"},
            ],
            deadline,
        )
        post_events([{"user_id": newcomer, "item_id": first, "type": "view"}], deadline)
        print(f"ok: {INGEST}/events accepted 3 events (run {run})", flush=True)
        found = wait_for_recommendation(newcomer, second, deadline)
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    print(
        f"ok: {API}/recommendations recommends {second} to {newcomer} "
        f"after {time.monotonic() - started:.1f} s, because {found.get('reasons')}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
