"""The Supervisor Desk's transaction list, totals, detail and export, on factory data with known answers."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from supervisor.models import TransactionExport
from tests.factories import (
    AgentFactory,
    CustomerFactory,
    PaymentEventFactory,
    PaymentRequestFactory,
    paid_request_with_history,
)

pytestmark = pytest.mark.django_db
T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def sam_client(client, sam):
    client.force_login(sam)
    return client


@pytest.fixture
def book(alice, bob):
    """Six requests with known outcomes: alice sent 4 (2 paid, 1 expired, 1 sent),
    bob sent 2 (1 canceled, 1 paid)."""

    def paid(agent, order, amount, currency, click_after, pay_after, **kw):
        return PaymentRequestFactory(
            agent=agent,
            order_number=order,
            amount=Decimal(amount),
            currency=currency,
            status="paid",
            sent_at=T0,
            clicked_at=T0 + timedelta(seconds=click_after),
            pay_deadline=T0 + timedelta(seconds=click_after + 900),
            paid_at=T0 + timedelta(seconds=click_after + pay_after),
            closed_at=T0 + timedelta(seconds=click_after + pay_after),
            **kw,
        )

    return {
        "a1": paid(
            alice,
            "A-1",
            "100.00",
            "ZAR",
            30,
            60,
            conversation__customer__name="Thandi Nkosi",
            conversation__customer__phone="+27821110001",
        ),
        "a2": paid(alice, "A-2", "50.50", "ZAR", 90, 120),
        "a3": PaymentRequestFactory(
            agent=alice,
            order_number="A-3",
            status="expired",
            amount=Decimal(60),
            sent_at=T0 - timedelta(days=3),
            closed_at=T0 - timedelta(days=3) + timedelta(minutes=5),
        ),
        "a4": PaymentRequestFactory(
            agent=alice,
            order_number="=1+1",
            status="sent",
            amount=Decimal(70),
            sent_at=T0 + timedelta(hours=1),
            conversation__customer__name="Zoë Ångström",
        ),
        "b1": PaymentRequestFactory(
            agent=bob, order_number="B-1", status="canceled", amount=Decimal(80), sent_at=T0, closed_at=T0
        ),
        "b2": paid(bob, "B-2", "1500", "JPY", 60, 30, conversation__customer__phone="+14155550123"),
    }


def results(client, **params):
    return client.get(reverse("supervisor:index"), params)


class TestList:
    def test_every_request_is_listed_newest_first(self, sam_client, book):
        response = sam_client.get(reverse("supervisor:index"))
        assert response.status_code == 200
        assert len(response.context["page"]) == len(book)
        assert response.context["page"][0].order_number == "=1+1"
        assert response.context["page"][len(book) - 1].order_number == "A-3"

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"status": "paid"}, {"A-1", "A-2", "B-2"}),
            ({"currency": "JPY"}, {"B-2"}),
            ({"q": "a-"}, {"A-1", "A-2", "A-3"}),
            ({"q": "thandi"}, {"A-1"}),
            ({"q": "415555"}, {"B-2"}),
        ],
    )
    def test_filters_and_search(self, sam_client, book, params, expected):
        assert {pr.order_number for pr in results(sam_client, **params).context["page"]} == expected

    def test_a_search_follows_a_customer_renamed_or_given_a_new_phone(self, sam_client, book):
        # Given a customer with a request, renamed and given a new phone (e.g. in the admin)
        customer = book["a1"].customer
        customer.name = "Thandi Dlamini"
        customer.phone = "+27829990009"
        customer.save()
        # Then the search finds the request by the new name and phone, and no longer by the old ones
        assert {pr.order_number for pr in results(sam_client, q="dlamini").context["page"]} == {"A-1"}
        assert {pr.order_number for pr in results(sam_client, q="829990").context["page"]} == {"A-1"}
        assert {pr.order_number for pr in results(sam_client, q="nkosi").context["page"]} == set()
        assert {pr.order_number for pr in results(sam_client, q="821110001").context["page"]} == set()

    def test_a_phone_typed_with_spaces_is_found(self, sam_client, book):
        assert {pr.order_number for pr in results(sam_client, q="(415) 555-01").context["page"]} == {"B-2"}

    def test_filter_by_agent(self, sam_client, book, bob):
        assert {pr.order_number for pr in results(sam_client, agent=bob.pk).context["page"]} == {"B-1", "B-2"}

    def test_filter_by_date_range(self, sam_client, book):
        day = T0.date()
        page = results(
            sam_client, sent_from=day - timedelta(days=4), sent_to=day - timedelta(days=2)
        ).context["page"]
        assert {pr.order_number for pr in page} == {"A-3"}

    def test_an_inverted_date_range_is_a_field_error(self, sam_client, book):
        response = results(sam_client, sent_from="2026-02-02", sent_to="2026-01-01")
        assert b"The end date is before the start date." in response.content

    @pytest.mark.parametrize(
        ("sort", "first"),
        [("amount", "A-2"), ("-amount", "B-2"), ("order", "=1+1"), ("-order", "B-2"), ("status", "B-1")],
    )
    def test_sort_by_any_column(self, sam_client, book, sort, first):
        assert results(sam_client, sort=sort).context["page"][0].order_number == first

    def test_an_unknown_sort_falls_back_to_newest_first(self, sam_client, book):
        assert results(sam_client, sort="password").context["page"][0].order_number == "=1+1"

    def test_pages_of_fifty(self, sam_client, alice):
        PaymentRequestFactory.create_batch(55, agent=alice)
        first = results(sam_client)
        second = results(sam_client, page=2)
        assert len(first.context["page"]) == 50
        assert len(second.context["page"]) == 5

    def test_the_live_fragment_renders_the_same_filtered_rows(self, sam_client, book):
        response = sam_client.get(reverse("supervisor:transaction_results"), {"status": "canceled"})
        assert response.status_code == 200
        assert b'data-order-number="B-1"' in response.content
        assert b'data-order-number="A-1"' not in response.content

    def test_the_list_uses_a_bounded_number_of_queries(self, sam_client, alice, bob):
        for agent in (alice, bob, AgentFactory()):
            PaymentRequestFactory.create_batch(
                20, agent=agent, status="paid", clicked_at=T0, paid_at=T0, pay_deadline=T0
            )
        with CaptureQueriesContext(connection) as queries:
            response = sam_client.get(reverse("supervisor:index"))
        assert response.status_code == 200
        assert len(queries) <= 12, [q["sql"][:120] for q in queries]


class TestTotals:
    def test_funnel_rates_and_medians(self, sam_client, book):
        totals = results(sam_client).context["totals"]
        assert (totals.sent, totals.clicked, totals.paid) == (6, 3, 3)
        assert totals.click_rate == 0.5
        assert totals.pay_rate == 1.0
        assert totals.median_click_seconds == 60  # 30, 60, 90
        assert totals.median_pay_seconds == 60  # 30, 60, 120

    def test_counts_by_status(self, sam_client, book):
        assert results(sam_client).context["totals"].by_status == {
            "paid": 3,
            "expired": 1,
            "sent": 1,
            "canceled": 1,
        }

    def test_links_sent_and_rates_by_agent(self, sam_client, book):
        rows = {row.name: row for row in results(sam_client).context["totals"].by_agent}
        assert (rows["Alice Agent"].sent, rows["Alice Agent"].expired_rate) == (4, 0.25)
        assert (rows["Bob Agent"].sent, rows["Bob Agent"].canceled_rate) == (2, 0.5)

    def test_amount_collected_per_currency(self, sam_client, book):
        assert results(sam_client).context["totals"].collected == [
            ("JPY", "JPY 1,500"),
            ("ZAR", "ZAR 150.50"),
        ]

    def test_totals_follow_the_filters(self, sam_client, book, bob):
        totals = results(sam_client, agent=bob.pk).context["totals"]
        assert (totals.sent, totals.paid) == (2, 1)


class TestDetail:
    def test_the_full_history_with_who_and_why(self, sam_client, alice):
        pr = paid_request_with_history(agent=alice, sent_at=T0, gateway_reference="sbx_123")

        response = sam_client.get(reverse("supervisor:transaction", args=[pr.pk]))

        assert [e.to_status for e in response.context["events"]] == ["sent", "clicked", "paid"]
        assert b"sbx_123" in response.content
        assert reverse("supervisor:conversation", args=[pr.conversation_id]).encode() in response.content

    def test_money_for_a_closed_request_is_shown_as_an_exception(self, sam_client):
        from payments.models import PaymentException

        pr = PaymentRequestFactory(status="expired")
        PaymentException.objects.create(
            payment_request=pr,
            kind="late",
            amount=pr.amount,
            currency=pr.currency,
            gateway="sandbox",
            gateway_reference="sbx_late",
        )
        response = sam_client.get(reverse("supervisor:transaction", args=[pr.pk]))
        assert b"Money for a closed request" in response.content
        assert b"sbx_late" in response.content

    def test_the_detail_page_uses_a_bounded_number_of_queries(self, sam_client):
        pr = PaymentRequestFactory()
        PaymentEventFactory.create_batch(30, payment_request=pr)
        with CaptureQueriesContext(connection) as queries:
            sam_client.get(reverse("supervisor:transaction", args=[pr.pk]))
        assert len(queries) <= 8


class TestExport:
    def test_the_filtered_list_as_csv_with_formulas_neutralised(self, sam_client, book, sam):
        response = sam_client.get(reverse("supervisor:export_csv"), {"sort": "order"})

        assert response["Content-Type"].startswith("text/csv")
        assert "attachment" in response["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
        assert rows[0][:3] == ["Order number", "Amount", "Currency"]
        assert rows[1][0] == "'=1+1"
        assert rows[1][3] == "Zoë Ångström"
        assert len(rows) == 7
        export = TransactionExport.objects.get()
        assert (export.user, export.row_count, export.filters) == (sam, 6, {"sort": "order"})

    def test_the_export_follows_the_filters(self, sam_client, book):
        response = sam_client.get(reverse("supervisor:export_csv"), {"status": "canceled"})
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
        assert [row[0] for row in rows[1:]] == ["B-1"]


class TestRoles:
    URLS = [
        ("supervisor:index", []),
        ("supervisor:transaction_results", []),
        ("supervisor:export_csv", []),
        ("supervisor:conversations", []),
    ]

    @pytest.mark.parametrize(("name", "args"), URLS)
    def test_agents_cannot_open_the_supervisor_desk(self, client, alice, name, args):
        client.force_login(alice)
        assert client.get(reverse(name, args=args)).status_code == 403

    @pytest.mark.parametrize(("name", "args"), URLS)
    def test_anonymous_users_are_sent_to_log_in(self, client, name, args):
        response = client.get(reverse(name, args=args))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))

    def test_transaction_detail_is_for_supervisors_only(self, client, alice):
        pr = PaymentRequestFactory(agent=alice)
        client.force_login(alice)
        assert client.get(reverse("supervisor:transaction", args=[pr.pk])).status_code == 403

    def test_people_are_shown_by_display_name(self, sam_client):
        PaymentRequestFactory(agent=AgentFactory(username="jdoe", first_name="", last_name=""))
        PaymentRequestFactory(agent=AgentFactory(first_name="Nomsa", last_name="Dube"))
        content = sam_client.get(reverse("supervisor:index")).content
        assert b"jdoe" in content
        assert b"Nomsa Dube" in content


def test_customers_with_non_ascii_names(sam_client):
    PaymentRequestFactory(customer=CustomerFactory(name="Søren Ødegård"))
    assert "Søren Ødegård" in sam_client.get(reverse("supervisor:index")).content.decode()


def test_the_admin_exports_selected_requests_and_cannot_change_them(admin_client, book):
    from payments.models import PaymentRequest

    selected = [book["a1"].pk, book["b1"].pk]
    response = admin_client.post(
        reverse("admin:payments_paymentrequest_changelist"),
        {"action": "export_csv", "_selected_action": selected},
    )
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert sorted(row[0] for row in rows[1:]) == ["A-1", "B-1"]
    change = admin_client.post(
        reverse("admin:payments_paymentrequest_change", args=[book["a4"].pk]), {"status": "paid"}
    )
    assert change.status_code == 403
    assert PaymentRequest.objects.get(pk=book["a4"].pk).status == "sent"
