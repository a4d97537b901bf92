"""schemathesis against the subscriber's own OpenAPI document, in-process (ASGI, the
feed never started, a store holding a few directives, asked as a declared client with
every scope): no operation answers with a server error, and every answer conforms to
the document — status code, content type and body — both for valid questions and for
the invalid ones it generates (malformed identifiers included)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
from services.subscriber.clients import Clients
from services.subscriber.querylog import QueryLog
from services.subscriber.store import DirectiveStore
from tests.unit.subscriber_factories import AUDITOR, client_specs, fill, offline_service

pytestmark = pytest.mark.unit

# A generated question may be invalid by being too long as a whole: refusing it with 414 is a
# refusal too (schemathesis' default list of refusal codes does not name it).
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    "400",
                    "401",
                    "403",
                    "404",
                    "405",
                    "406",
                    "409",
                    "413",
                    "414",
                    "415",
                    "422",
                    "428",
                    "429",
                    "5xx",
                ]
            }
        }
    }
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    root = tmp_path_factory.mktemp("openapi")
    store = DirectiveStore(root / "aviation.sqlite", "aviation")
    fill(store)
    svc = offline_service(store)  # a current subscriber: /healthz answers 200, as_of is set
    log = QueryLog(root / "queries.sqlite", b"k" * 32)
    try:
        yield schemathesis.openapi.from_asgi(
            "/openapi.json", CheckApp(svc, Clients(client_specs()), log), config=CONFIG
        )
    finally:
        log.close()
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
def test_no_server_error_and_answers_conform(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS, headers={"authorization": f"Bearer {AUDITOR}"})

    run()


def test_document_covers_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    doc = api_schema.raw_schema
    assert set(doc["paths"]) == {"/v1/check", "/v1/entries/{entry_id}", "/healthz"}
    assert set(doc["paths"]["/v1/check"]) == {"get", "post"}
    assert {"200", "503"} <= set(doc["paths"]["/healthz"]["get"]["responses"])
    assert {"200", "404", "422"} <= set(doc["paths"]["/v1/entries/{entry_id}"]["get"]["responses"])
    for path in ("/v1/check", "/v1/entries/{entry_id}"):
        for op in doc["paths"][path].values():
            assert {"401", "403", "429"} <= set(op["responses"])
            assert op["security"] == [{"clientCertificate": []}, {"apiKey": []}]
    assert set(doc["components"]["securitySchemes"]) == {"clientCertificate", "apiKey"}
    assert "413" in doc["paths"]["/v1/check"]["post"]["responses"]
