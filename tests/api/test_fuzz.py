"""Schemathesis against the embedded app's own OpenAPI: every operation, with valid and
invalid inputs, answers no 5xx and nothing its documentation does not promise.

The app is served in-process (schemathesis's ASGI transport runs its lifespan on the first
request), over a data directory of its own.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import schemathesis

from reco.embedded import create_app
from reco.settings import EmbeddedSettings
from tests.conftest import wait_until
from tests.fuzzing import bounded, validate

pytestmark = pytest.mark.api

EXAMPLES = 100

# The schema comes from the app object, without serving it: collecting this module opens
# no engine; the first fuzzed request does.
_DATA = tempfile.TemporaryDirectory(prefix="reco-fuzz-")
APP = create_app(EmbeddedSettings(data_dir=Path(_DATA.name), model_refresh_s=0))
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP


@pytest.fixture(scope="module", autouse=True)
def _ready() -> None:
    """Fuzz the serving app, not one still replaying its log (/health/ready is 503 then)."""
    probe = schema["/health/ready"]["GET"].Case()
    wait_until(lambda: probe.call().status_code == 200, timeout_s=30)


def test_every_reference_of_the_openapi_resolves() -> None:
    """A "$ref" that points nowhere (a "$defs" inside an operation) leaves clients and
    fuzzers without that part of the schema."""
    document = APP.openapi()
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(document)))
    assert refs
    for ref in refs:
        node = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]


@schema.parametrize()
@bounded(EXAMPLES)
def test_every_operation_keeps_its_contract(case: schemathesis.Case) -> None:
    validate(case, case.call())
