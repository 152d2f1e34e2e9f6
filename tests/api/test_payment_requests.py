"""The payment-request endpoints: list and filters, one request with its history, create-and-send through the
desk's own form and action, and cancel with the desk's outcomes and messages."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from desk.models import Message
from payments import actions, lifecycle
from payments.lifecycle import Refusal, Status
from payments.models import PaymentRequest
from tests.api.conftest import create_body
from tests.factories import ConversationFactory
from tests.payments.conftest import make_request, send

LIST = "/api/v1/payment-requests"


class TestList:
    def test_it_lists_newest_first_with_the_request_object(self, oms, alices_conversation, alice):
        first = send(alices_conversation, alice, order_number="A-1")
        second = send(alices_conversation, alice, order_number="A-2")

        body = oms.get(LIST).json()

        assert body["object"] == "list"
        assert body["has_more"] is False
        assert body["next_cursor"] is None
        assert [row["id"] for row in body["data"]] == [second.pk, first.pk]
        row = body["data"][0]
        assert row["object"] == "payment_request"
        assert row["status"] == "sent"
        assert row["version"] == 1
        assert row["amount"] == "120.50"
        assert row["currency"] == "ZAR"
        assert row["agent"] == {"id": alice.pk, "username": "alice", "name": "Alice Agent"}
        assert row["customer"]["phone"] == alices_conversation.customer.phone
        assert row["expires_at"] == row["click_deadline"]

    def test_it_filters_by_status_agent_order_number_and_created_range(self, oms, alice, bob):
        now = timezone.now()
        old = make_request(Status.PAID, agent=alice, order_number="OLD-1", sent_at=now - timedelta(days=2))
        canceled = make_request(Status.CANCELED, agent=alice, order_number="C-1")
        bobs = make_request(Status.SENT, agent=bob, order_number="B-1")

        def ids(**params):
            return [row["id"] for row in oms.get(LIST, params).json()["data"]]

        assert ids(status="canceled") == [canceled.pk]
        assert ids(agent_id=bob.pk) == [bobs.pk]
        assert ids(order_number="OLD-1") == [old.pk]
        assert set(ids(created_gte=(now - timedelta(hours=1)).isoformat())) == {canceled.pk, bobs.pk}
        assert ids(created_lt=(now - timedelta(days=1)).isoformat()) == [old.pk]
        assert ids(status="canceled", agent_id=bob.pk) == []

    def test_bad_filters_are_422_with_the_field_named(self, oms, db):
        response = oms.get(LIST, {"status": "lost", "limit": 0})

        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert set(response.json()["errors"]) == {"query.status", "query.limit"}

    def test_a_bad_cursor_is_422(self, oms, db):
        response = oms.get(LIST, {"cursor": "bm90LWEtY3Vyc29y"})

        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"

    def test_a_page_costs_the_same_queries_however_many_rows(self, oms, alice, django_assert_num_queries):
        for _ in range(3):
            make_request(agent=alice)
        oms.get(LIST)  # warm up: the key's last use is recorded at most once a minute
        with django_assert_num_queries(2):  # the key, the page
            oms.get(LIST, {"limit": 2})
        for _ in range(20):
            make_request(agent=alice)
        with django_assert_num_queries(2):
            oms.get(LIST, {"limit": 20})


class TestDetail:
    def test_it_shows_the_full_status_history_oldest_first(self, oms, alices_conversation, alice):
        payment_request = send(alices_conversation, alice)
        actions.register_click(payment_request.pk)

        body = oms.get(f"{LIST}/{payment_request.pk}").json()

        assert body["status"] == "clicked"
        assert body["version"] == 2
        assert [(h["from_status"], h["to_status"], h["actor"], h["reason"]) for h in body["history"]] == [
            (None, "sent", "agent", "sent"),
            ("sent", "clicked", "customer", "clicked"),
        ]
        assert body["history"][0]["actor_user"]["username"] == "alice"
        assert body["expires_at"] == body["pay_deadline"]

    @pytest.mark.parametrize("pk", ["999999", str(2**63 - 1)])
    def test_an_unknown_request_is_a_json_404(self, oms, db, pk):
        response = oms.get(f"{LIST}/{pk}")

        assert response.status_code == 404
        assert response.json()["code"] == "payment_request_not_found"

    @pytest.mark.parametrize("pk", ["0", str(2**63), "abc"])
    def test_an_impossible_id_is_422(self, oms, db, pk):
        assert oms.get(f"{LIST}/{pk}").status_code in {404, 422}


class TestCreate:
    def test_it_sends_the_link_into_the_conversation_as_the_agent(self, oms, alices_conversation, alice):
        response = oms.post_json(LIST, create_body(alices_conversation, alice, description="Two shirts"))

        assert response.status_code == 201
        body = response.json()
        payment_request = PaymentRequest.objects.get()
        assert body["id"] == payment_request.pk
        assert body["status"] == "sent"
        assert body["history"][0]["actor_user"]["id"] == alice.pk
        assert payment_request.agent == alice
        assert payment_request.amount == Decimal("120.50")
        assert payment_request.phone == alices_conversation.customer.phone
        assert payment_request.message.kind == Message.Kind.PAYMENT
        assert "API-1001" in payment_request.message.body
        assert "/pay/" in payment_request.message.body

    def test_the_currency_defaults_to_the_deployments(self, oms, alices_conversation, alice, settings):
        body = create_body(alices_conversation, alice)
        del body["currency"]

        assert oms.post_json(LIST, body).json()["currency"] == settings.CHAT2PAY_DEFAULT_CURRENCY

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("amount", "12,50", "Enter an amount in numbers, such as 120.50."),
            ("amount", "0", "Enter an amount greater than zero."),
            ("amount", "10.001", "ZAR amounts have at most 2 decimal places."),
            ("order_number", "<script>", "Use letters, digits, spaces and - _ . / # : only."),
            ("currency", "XXX", "Choose one of the listed currencies."),
        ],
    )
    def test_it_refuses_what_the_desk_form_refuses_with_the_same_message(
        self, oms, alices_conversation, alice, field, value, message
    ):
        response = oms.post_json(LIST, create_body(alices_conversation, alice, **{field: value}))

        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert response.json()["errors"] == {field: [message]}
        assert not PaymentRequest.objects.exists()

    def test_a_conversation_not_assigned_to_the_agent_is_refused_with_the_desks_message(
        self, oms, alice, bob
    ):
        bobs_conversation = ConversationFactory(status="open", assigned_agent=bob)

        response = oms.post_json(LIST, create_body(bobs_conversation, alice))

        assert response.status_code == 409
        assert response.json() == {
            "code": "conversation_not_open",
            "message": lifecycle.CONVERSATION_NOT_OPEN_REFUSAL,
        }

    def test_a_second_live_request_for_an_order_is_refused_naming_the_first(
        self, oms, alices_conversation, alice
    ):
        send(alices_conversation, alice, order_number="API-1001")

        response = oms.post_json(LIST, create_body(alices_conversation, alice))

        assert response.status_code == 409
        assert response.json()["code"] == "order_has_live_request"
        assert "already has a live payment request (sent by Alice Agent" in response.json()["message"]

    def test_the_agent_must_be_an_agent_and_the_conversation_must_exist(self, oms, alices_conversation, sam):
        not_an_agent = oms.post_json(LIST, create_body(alices_conversation, sam))
        no_conversation = oms.post_json(
            LIST,
            create_body(alices_conversation, alices_conversation.assigned_agent)
            | {"conversation_id": 987654},
        )

        assert (not_an_agent.status_code, not_an_agent.json()["code"]) == (422, "invalid_agent")
        assert (no_conversation.status_code, no_conversation.json()["code"]) == (
            404,
            "conversation_not_found",
        )


class TestCancel:
    def test_it_cancels_a_sent_request_and_the_customer_gets_the_exact_notice(
        self, oms, alices_conversation, alice
    ):
        payment_request = send(alices_conversation, alice, order_number="ORD-7")

        response = oms.post_json(f"{LIST}/{payment_request.pk}/cancel")

        assert response.status_code == 200
        assert response.json()["status"] == "canceled"
        assert response.json()["version"] == 2
        assert response.json()["history"][-1]["actor_user"]["id"] == alice.pk
        assert alices_conversation.messages.filter(body="The ORD-7 has been canceled by the Agent").exists()

    @pytest.mark.parametrize(
        ("status", "refusal"),
        [
            (Status.CLICKED, Refusal.ALREADY_CLICKED),
            (Status.PAID, Refusal.ALREADY_CLICKED),
            (Status.CANCELED, Refusal.ALREADY_CANCELED),
            (Status.EXPIRED, Refusal.EXPIRED),
            (Status.FAILED, Refusal.NOT_DELIVERED),
        ],
    )
    def test_refusals_change_nothing_and_say_what_the_desk_toast_says(self, oms, alice, status, refusal):
        payment_request = make_request(status, agent=alice)

        response = oms.post_json(f"{LIST}/{payment_request.pk}/cancel")

        assert response.status_code == 409
        assert response.json() == {"code": refusal.value, "message": refusal.label}
        payment_request.refresh_from_db()
        assert payment_request.status == status

    def test_a_sent_request_past_its_deadline_is_expired_even_before_the_sweep(self, oms, alice):
        payment_request = make_request(Status.SENT, agent=alice)

        with time_machine.travel(payment_request.click_deadline, tick=False):
            response = oms.post_json(f"{LIST}/{payment_request.pk}/cancel")

        assert response.json() == {"code": "expired", "message": "The link has expired."}

    def test_an_unknown_request_is_404(self, oms, db):
        assert oms.post_json(f"{LIST}/424242/cancel").json()["code"] == "payment_request_not_found"


def test_the_schema_and_the_docs_page_are_served(client, db):
    schema = client.get("/api/v1/openapi.json").json()

    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/payment-requests", "/api/v1/payment-requests/{id}"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    assert client.get("/api/v1/docs").status_code == 200


def test_the_docs_page_works_offline_every_asset_is_served_from_here(client, db):
    page = client.get("/api/v1/docs")
    html = page.content.decode()

    assert page.status_code == 200
    assert not re.search(r"(?:src|href)=[\"'](?:https?:)?//", html), "the docs page loads something remote"
    assets = re.findall(r"(?:src|href)=[\"']([^\"']+)[\"']", html)
    assert {asset.rsplit("/", 1)[-1] for asset in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert b"".join(response.streaming_content if response.streaming else [response.content]), asset
    assert "/api/v1/openapi.json" in html
    # The page's own policy allows nothing remote either.
    assert "'self'" in page["Content-Security-Policy"]
    assert "http" not in page["Content-Security-Policy"]


class TestErrorsAreJsonEverywhere:
    def test_an_unknown_path_under_the_api_is_a_json_404(self, oms, db):
        for path in [
            "/api/v1/",
            "/api/v1/nothing-here",
            "/api/v1/payment-requests/",
            "/api/v1/payment-requests/1/refund",
        ]:
            response = oms.post_json(path) if path.endswith("refund") else oms.get(path)

            assert response.status_code == 404, path
            assert response.json() == {"code": "not_found", "message": "No such API path."}

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [("delete", LIST, "GET, POST"), ("put", f"{LIST}/1", "GET"), ("get", f"{LIST}/1/cancel", "POST")],
    )
    def test_an_unsupported_method_is_a_json_405_naming_the_allowed_ones(
        self, oms, db, method, path, allowed
    ):
        response = getattr(oms, method)(path)

        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"
        assert sorted(response["Allow"].split(", ")) == sorted(allowed.split(", "))

    def test_a_crash_is_a_json_500_and_logged(self, oms, alice, monkeypatch, caplog):
        payment_request = make_request(agent=alice)

        def crash(*args, **kwargs):
            raise RuntimeError("the database went away")

        monkeypatch.setattr(actions, "cancel_payment_request", crash)
        response = oms.post_json(f"{LIST}/{payment_request.pk}/cancel")

        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
        assert "database" not in response.json()["message"]  # details go to the log, not to the client
        (logged,) = [record for record in caplog.records if record.levelname == "ERROR"]  # once, not twice
        assert logged.exc_info
