"""Property-based run over the published OpenAPI schema against a live test server (Schemathesis).

For every operation, Hypothesis generates valid and invalid requests from the schema; each response must not
be a 5xx, must use a documented status code and content type, and must match its documented schema. The
number of examples is bounded so the run takes seconds.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import keys
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import send

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION_AND_MODE = 25


@pytest.mark.django_db(transaction=True)
def test_no_generated_request_gets_a_5xx_or_breaks_the_schema(live_server, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 100_000
    key = keys.create_api_key(name="schemathesis", scope="write")[1]
    alice = AgentFactory(username="alice")
    conversation = ConversationFactory(status="open", assigned_agent=alice)
    for _ in range(3):
        send(conversation, alice)  # something to list, and ids 1.. to find
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 4

    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                headers = {"Authorization": f"Bearer {key}"}
                response = case.call(base_url=live_server.url, headers=headers, timeout=10)
                case.validate_response(response, checks=CHECKS, headers=headers)

            check()
