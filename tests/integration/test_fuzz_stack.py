"""Schemathesis against the real ``reco ingest`` and ``reco api`` processes, over HTTP,
through the OpenAPI each one serves, with Kafka, Redis and PostgreSQL behind them: no 5xx
and nothing the documentation does not promise, for valid and invalid inputs alike."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import given
from hypothesis.errors import Unsatisfiable

from reco.local.stack import Stack
from tests.fuzzing import bounded, validate

pytestmark = pytest.mark.integration

EXAMPLES = 25
"""Per operation and mode: each request crosses a real process and, for writes, a broker."""
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@pytest.mark.parametrize("role", ["ingest", "api"])
def test_a_service_keeps_the_contract_of_its_own_openapi(stack: Stack, role: str) -> None:
    service = stack.start(role)[role]
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the served OpenAPI has no operation"
    failures = []
    for operation in operations:
        for mode in MODES:
            try:
                _fuzz(operation, mode, service.url)
            except Unsatisfiable:
                # An operation without parameters or body has no invalid request to make.
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # gather every operation's finding, then fail once
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)


def _fuzz(
    operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, url: str
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @bounded(EXAMPLES)
    def one_case(case: schemathesis.Case) -> None:
        validate(case, case.call(base_url=url))

    one_case()
