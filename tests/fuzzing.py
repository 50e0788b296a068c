"""What both fuzz modules share: bounded, deterministic settings, and the few refusals a
schema cannot express.

Every check of schemathesis runs on every response, but for two documented cases:
``positive_data_acceptance`` is skipped for a 422 whose only reason is a rule that OpenAPI
has no words for (so that it still catches every other schema-valid request the engine
refuses), and a probe's 503 is not a server error (below).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

# Deterministic, so that CI and a laptop fuzz the same requests; no deadline, since the
# first requests of a run also warm the app up.
BOUNDED = {"deadline": None, "derandomize": True, "suppress_health_check": list(HealthCheck)}


def bounded(max_examples: int) -> settings:
    return settings(max_examples=max_examples, **BOUNDED)


def validate(case: schemathesis.Case, response: Any) -> None:
    """Every check, except for the refusals of :func:`beyond_the_schema` and the 503 of
    a probe."""
    excluded = []
    if beyond_the_schema(case, response):
        excluded.append(positive_data_acceptance)
    if case.path.startswith("/health/") and response.status_code == 503:
        # /health/ready is 503 while the processor catches up with the events the fuzzer
        # itself just sent: that is the probe's documented answer, not a failure.
        excluded.append(not_a_server_error)
    case.validate_response(response, excluded_checks=excluded)


def beyond_the_schema(case: schemathesis.Case, response: Any) -> bool:
    """A 422 for a rule that OpenAPI cannot state about a schema-valid request."""
    if response.status_code != 422:
        return False
    query = case.query or {}
    # Cross-parameter rules: parameters are described one by one.
    if _price_range_inverted(query):
        return True
    if case.path == "/recommendations" and ("user_id" in query) == ("session_id" in query):
        return True
    if case.method == "POST" and case.path == "/events":
        return _only_setting_or_clock_rejections(response)
    return False


def _price_range_inverted(query: dict[str, Any]) -> bool:
    try:
        return float(query["min_price"]) > float(query["max_price"])
    except (KeyError, TypeError, ValueError):
        return False


def _only_setting_or_clock_rejections(response: Any) -> bool:
    """The accepted event types are a setting (RECO_EVENT_WEIGHTS), and how far ahead a
    timestamp may be is one against the clock (RECO_MAX_FUTURE_SKEW_S); a static schema
    states neither. An id of only spaces or with a control character is refused by rules
    the schema states as a pattern, which generators may not honour for every value."""
    rejected = response.json().get("rejected") or []
    reasons = ("type: unknown event type", "timestamp: ")
    return bool(rejected) and all(str(r["error"]).startswith(reasons) for r in rejected)
