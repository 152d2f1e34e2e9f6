"""Regression guard for the Supervisor Desk at 100k requests (issue 7, B6): plans and query counts, no clocks.

What made a broad search slow was how often the filtered requests were read: every pass re-evaluates the
filters, and a search matching most customers reads the whole customers table in each one. What makes a
narrow search fast is the trigram index on the customers' names and phones. Both are deterministic, so both
are asserted here; the timings are in docs/performance.md and docs/supervisor.md.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from payments.models import PaymentRequest
from supervisor.forms import matching_customers
from supervisor.totals import compute_totals
from tests.factories import AgentFactory, CustomerFactory, PaymentRequestFactory

pytestmark = pytest.mark.django_db

TOTALS_PASSES = 2  # the grouped counts and amounts, and the two medians


def plan(queryset) -> str:
    """EXPLAIN of the queryset's SQL with sequential scans priced out: on a tiny test table the planner
    would read every row anyway, so this asks whether an index *can* serve the query, not whether it wins."""
    sql, params = queryset.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_name_or_phone_search_can_use_the_trigram_indexes():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is None:
            pytest.skip(
                "this PostgreSQL has no pg_trgm (the embedded one): desk migration 0004 made no index"
            )
    # Given some customers
    CustomerFactory.create_batch(5)
    # When a supervisor searches for part of a name or a phone number
    explained = plan(matching_customers("mith 0821").values("pk"))
    # Then both sides of the OR are index scans, not a read of every customer
    assert "desk_customer_name_trgm" in explained, explained
    assert "desk_customer_phone_trgm" in explained, explained


@pytest.mark.parametrize("agents", [1, 4])
def test_the_totals_read_the_requests_twice_whatever_the_number_of_agents(agents):
    # Given requests sent by a number of agents
    for agent in AgentFactory.create_batch(agents):
        PaymentRequestFactory.create_batch(2, agent=agent)
    # When the totals are computed
    with CaptureQueriesContext(connection) as queries:
        totals = compute_totals(PaymentRequest.objects.all())
    # Then the requests are read in two passes, plus one look-up of the agents' names
    passes = [q["sql"] for q in queries.captured_queries if "payments_paymentrequest" in q["sql"]]
    assert len(passes) == TOTALS_PASSES, passes
    assert len(queries) == TOTALS_PASSES + 1
    assert totals.sent == 2 * agents
