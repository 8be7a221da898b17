"""The served OpenAPI document is the contract: schemathesis generates requests from it
and checks every response against it (no 5xx, documented status codes, content types
and response schemas). docs/api.md's endpoint table is generated from the same document.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as st

from stella.service.openapi import markdown
from tests.service.support import Service
from tests.support import REPO

CHECKS = [
    st.not_a_server_error,
    st.status_code_conformance,
    st.content_type_conformance,
    st.response_schema_conformance,
]


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_api_conforms_to_its_openapi_document(service: Service) -> None:
    # A tenant with every scope but no ledger: generated runs are refused, never executed.
    headers = {"Authorization": f"Bearer {service.token('fuzz')}"}
    api = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def conforms(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        conforms()


def test_docs_list_every_endpoint() -> None:
    text = (REPO / "docs" / "api.md").read_text()
    assert markdown() in text, "docs/api.md is stale: python -m stella.service.openapi --markdown"
