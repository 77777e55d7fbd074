"""schemas/openapi.json against the live reference server (schemathesis, a few examples per
operation, no deadline), and the document itself: it refers to the contracts' schema files
(MS-HTTP-001: the contracts travel as written, never as copies) and states every status the
binding defines (MS-HTTP-006..009)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from server_helpers import Server, create_key, start

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "schemas" / "openapi.json"
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]


def _refs(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_the_document_refers_to_the_contracts_and_copies_none() -> None:
    document = json.loads(DOCUMENT.read_text())
    assert document["openapi"].startswith("3.1.")
    files = {ref.split("#")[0] for ref in _refs(document) if not ref.startswith("#")}
    assert files >= {"event-payload.schema.json", "metering-config.schema.json",
                     "aggregation-request.schema.json", "meter-reading.schema.json",
                     "quota-check.schema.json", "quota-decision.schema.json",
                     "invoice-request.schema.json", "invoice.schema.json",
                     "projection.schema.json", "problem.schema.json"}
    for name in files:
        assert (DOCUMENT.parent / name).is_file(), name
    # Its own components are the HTTP-only bodies; none restates a contract's fields.
    own = json.dumps(document["components"]["schemas"])
    for field in ('"measurements"', '"aggregation"', '"recordedAt"', '"eventTypes"'):
        assert field not in own, field
    for ref in _refs(document):
        if ref.startswith("#/"):
            node: Any = document
            for token in ref[2:].split("/"):
                node = node[token]


def test_the_document_states_the_binding_statuses() -> None:
    paths = json.loads(DOCUMENT.read_text())["paths"]
    events = set(paths["/v1/events"]["post"]["responses"])
    assert {"200", "400", "401", "403", "408", "413", "415", "429", "503"} <= events
    quota = paths["/v1/quota/check"]["post"]["responses"]
    assert {"200", "429", "503"} <= set(quota)
    assert "Retry-After" in quota["429"]["headers"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters" or path == "/v1/health":
                continue
            assert "401" in operation["responses"], (path, method)
    for operations in paths.values():  # every request can be too slow or carry too much
        for method, operation in operations.items():
            if method != "parameters":
                assert {"408", "431"} <= set(operation["responses"]), method


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    folder = tmp_path_factory.mktemp("contract")
    store = f"duckdb:{folder / 'contract.duckdb'}"
    key = create_key(store, "0", "0", "admin")  # the tenant hypothesis tries first
    server = start(store, folder)
    yield server, key
    server.stop()


def test_the_server_keeps_the_contract(live: tuple[Server, str]) -> None:
    """Every operation, a few generated requests each, every response checked against the
    document: no 5xx, documented statuses, content types, bodies and headers."""
    server, key = live
    loaded = schemathesis.openapi.from_path(str(DOCUMENT))
    loaded.config.update(base_url=server.url)
    operations = [result.ok() for result in loaded.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 10
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=5, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)

        call()
