"""schemathesis against the subscriber's own OpenAPI document, in-process (ASGI, the
feed never started, a store holding a few directives): no operation answers with a
server error, and every answer conforms to the document — status code, content type
and body — both for valid questions and for the invalid ones it generates."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from services.subscriber.api import CheckApp
from services.subscriber.store import DirectiveStore
from tests.unit.test_subscriber_api import fill, offline_service

pytestmark = pytest.mark.unit

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    store = DirectiveStore(tmp_path_factory.mktemp("openapi") / "aviation.sqlite", "aviation")
    fill(store)
    svc = offline_service(store)
    svc.stale_after = 3600.0
    svc.caught_up(time.time())  # a current subscriber: /healthz answers 200, as_of is set
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", CheckApp(svc))
    finally:
        store.close()


# schemathesis' own pytest plugin does not run under pytest 9 yet, so each operation's
# strategy is driven by hypothesis directly: the same generation, the same checks.
# Invalid questions are generated only where the document constrains something: a
# path string and an operation without parameters have no invalid form.
RUNS = [
    ("GET", "/v1/check", GenerationMode.POSITIVE),
    ("GET", "/v1/check", GenerationMode.NEGATIVE),
    ("POST", "/v1/check", GenerationMode.POSITIVE),
    ("POST", "/v1/check", GenerationMode.NEGATIVE),
    ("GET", "/v1/entries/{entry_id}", GenerationMode.POSITIVE),
    ("GET", "/healthz", GenerationMode.POSITIVE),
]


@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=[f"{m} {p} {g.value}" for m, p, g in RUNS])
def test_no_server_error_and_answers_conform(api_schema: schemathesis.BaseSchema, method: str, path: str,
                                             mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


def test_document_covers_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    doc = api_schema.raw_schema
    assert set(doc["paths"]) == {"/v1/check", "/v1/entries/{entry_id}", "/healthz"}
    assert set(doc["paths"]["/v1/check"]) == {"get", "post"}
    assert {"200", "503"} <= set(doc["paths"]["/healthz"]["get"]["responses"])
    assert {"200", "404", "422"} <= set(doc["paths"]["/v1/entries/{entry_id}"]["get"]["responses"])
