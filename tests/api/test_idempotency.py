"""Idempotency-Key, as Stripe does it: replay, mismatch, concurrency, retention."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import time_machine
from django.db import connections
from django.utils import timezone

from api import idempotency
from api.models import IdempotencyRecord
from payments.models import PaymentRequest
from tests.api.conftest import ApiClient, create_body
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import send

LIST = "/api/v1/payment-requests"


class TestReplay:
    def test_the_same_key_and_body_get_the_same_response_and_send_once(self, oms, alices_conversation, alice):
        key = str(uuid.uuid4())
        body = create_body(alices_conversation, alice)

        first = oms.post_json(LIST, body, idempotency_key=key)
        again = oms.post_json(
            LIST, dict(reversed(body.items())), idempotency_key=key
        )  # key order is no change

        assert first.status_code == again.status_code == 201
        assert again.content == first.content
        assert again["Idempotent-Replayed"] == "true"
        assert not first.has_header("Idempotent-Replayed")
        assert PaymentRequest.objects.count() == 1

    def test_a_refusal_is_replayed_too(self, oms, alices_conversation, alice):
        payment_request = send(alices_conversation, alice)
        oms.post_json(f"{LIST}/{payment_request.pk}/cancel", idempotency_key="cancel-1")

        again = oms.post_json(f"{LIST}/{payment_request.pk}/cancel", idempotency_key="cancel-1")
        fresh = oms.post_json(f"{LIST}/{payment_request.pk}/cancel", idempotency_key="cancel-2")

        assert again.status_code == 200
        assert again.json()["status"] == "canceled"
        assert fresh.status_code == 409
        assert fresh.json()["code"] == "already_canceled"

    def test_the_same_key_with_a_different_body_is_422_and_changes_nothing(
        self, oms, alices_conversation, alice
    ):
        oms.post_json(LIST, create_body(alices_conversation, alice), idempotency_key="k-1")

        response = oms.post_json(
            LIST, create_body(alices_conversation, alice, amount="99.00"), idempotency_key="k-1"
        )

        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"
        assert PaymentRequest.objects.count() == 1

    def test_the_same_key_on_another_endpoint_is_a_different_request(self, oms, alices_conversation, alice):
        payment_request = send(alices_conversation, alice)
        oms.post_json(f"{LIST}/{payment_request.pk}/cancel", idempotency_key="k-2")

        response = oms.post_json(LIST, create_body(alices_conversation, alice), idempotency_key="k-2")

        assert response.json()["code"] == "idempotency_key_reused"

    def test_keys_belong_to_one_api_key(self, oms, alices_conversation, alice):
        from api import keys

        other = ApiClient(keys.create_api_key(name="Other", scope="write")[1])
        oms.post_json(LIST, create_body(alices_conversation, alice), idempotency_key="shared")

        response = other.post_json(
            LIST, create_body(alices_conversation, alice, order_number="API-2"), idempotency_key="shared"
        )

        assert response.status_code == 201
        assert PaymentRequest.objects.count() == 2

    def test_a_request_rejected_before_it_ran_stores_nothing(self, oms, alices_conversation, alice):
        bad = oms.post_json(
            LIST, create_body(alices_conversation, alice, amount="abc"), idempotency_key="k-3"
        )
        fixed = oms.post_json(LIST, create_body(alices_conversation, alice), idempotency_key="k-3")

        assert bad.status_code == 422
        assert fixed.status_code == 201

    @pytest.mark.parametrize("key", ["has space", "x" * 256, "naïve"])
    def test_a_malformed_key_is_422(self, oms, alices_conversation, alice, key):
        response = oms.post(
            LIST,
            data=create_body(alices_conversation, alice),
            content_type="application/json",
            headers={"Idempotency-Key": key},
        )

        assert response.status_code == 422
        assert not PaymentRequest.objects.exists()

    def test_keys_are_kept_at_least_24_hours_then_purged(self, oms, alices_conversation, alice, settings):
        first = oms.post_json(LIST, create_body(alices_conversation, alice), idempotency_key="k-4")

        with time_machine.travel(timezone.now() + timedelta(hours=23, minutes=59)):
            assert idempotency.purge_expired_keys() == 0
            assert oms.post_json(
                LIST, create_body(alices_conversation, alice), idempotency_key="k-4"
            ).content == (first.content)
        with time_machine.travel(
            timezone.now() + timedelta(hours=settings.API_IDEMPOTENCY_KEY_HOURS, minutes=1)
        ):
            assert idempotency.purge_expired_keys() == 1
        assert not IdempotencyRecord.objects.exists()


class TestAsStripeDoes:
    def test_a_refusal_is_replayed_even_after_the_world_changed(self, oms, alices_conversation, alice):
        first = oms.post_json(LIST, create_body(alices_conversation, alice, order_number="O-1"))
        refused = oms.post_json(
            LIST, create_body(alices_conversation, alice, order_number="O-1"), idempotency_key="k-5"
        )
        oms.post_json(f"{LIST}/{first.json()['id']}/cancel")  # the order has no live request any more

        again = oms.post_json(
            LIST, create_body(alices_conversation, alice, order_number="O-1"), idempotency_key="k-5"
        )

        assert refused.status_code == again.status_code == 409
        assert refused.json()["code"] == "order_has_live_request"
        assert again.content == refused.content
        assert again["Idempotent-Replayed"] == "true"
        assert PaymentRequest.objects.count() == 1

    def test_the_same_key_while_the_first_request_still_runs_is_409(
        self, oms, alices_conversation, alice, monkeypatch
    ):
        from payments import actions

        body = create_body(alices_conversation, alice)
        send_payment_request = actions.send_payment_request
        meanwhile = []

        def send_while_a_retry_arrives(*args, **kwargs):
            meanwhile.append(oms.post_json(LIST, body, idempotency_key="k-6"))  # the first one is in flight
            return send_payment_request(*args, **kwargs)

        monkeypatch.setattr(actions, "send_payment_request", send_while_a_retry_arrives)
        first = oms.post_json(LIST, body, idempotency_key="k-6")
        monkeypatch.setattr(actions, "send_payment_request", send_payment_request)
        after = oms.post_json(LIST, body, idempotency_key="k-6")

        (during,) = meanwhile
        assert during.status_code == 409
        assert during.json()["code"] == "idempotency_key_in_use"
        assert first.status_code == 201
        assert after.content == first.content
        assert PaymentRequest.objects.count() == 1

    def test_a_crash_is_a_500_that_is_replayed_too(
        self, oms, alices_conversation, alice, monkeypatch, caplog
    ):
        from payments import actions

        body = create_body(alices_conversation, alice)

        def crash(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(actions, "send_payment_request", crash)
        crashed = oms.post_json(LIST, body, idempotency_key="k-7")
        monkeypatch.undo()
        again = oms.post_json(LIST, body, idempotency_key="k-7")
        fresh = oms.post_json(LIST, body, idempotency_key="k-8")

        assert crashed.status_code == again.status_code == 500
        assert crashed.json()["code"] == "internal_error"
        assert again.content == crashed.content
        assert again["Idempotent-Replayed"] == "true"
        assert fresh.status_code == 201
        (logged,) = [record for record in caplog.records if record.levelname == "ERROR"]  # the crash, once
        assert logged.exc_info

    def test_expired_keys_are_purged_by_beat_at_least_hourly(self, settings):
        (entry,) = [
            entry
            for entry in settings.CELERY_BEAT_SCHEDULE.values()
            if entry["task"] == "api.tasks.purge_idempotency_keys_task"
        ]
        assert entry["schedule"] <= 3600
        assert settings.API_IDEMPOTENCY_KEY_HOURS >= 24


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_have_one_effect():
    """Eight threads, each with its own connection, post the same key and body at the same instant."""
    from api import keys

    key = keys.create_api_key(name="OMS", scope="write")[1]
    alice = AgentFactory(username="alice")
    conversation = ConversationFactory(status="open", assigned_agent=alice)
    body = create_body(conversation, alice)
    barrier = threading.Barrier(8)

    def post():
        try:
            barrier.wait(timeout=10)
            return ApiClient(key).post_json(LIST, body, idempotency_key="same-instant")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: post(), range(8)))

    outcomes = Counter(response.status_code for response in responses)
    assert PaymentRequest.objects.count() == 1
    assert set(outcomes) <= {201, 409}
    assert outcomes[201] >= 1
    assert len({response.content for response in responses if response.status_code == 201}) == 1
    assert all(r.json()["code"] == "idempotency_key_in_use" for r in responses if r.status_code == 409)
    # Once the first finished, a retry gets its response.
    retry = ApiClient(key).post_json(LIST, body, idempotency_key="same-instant")
    assert retry.status_code == 201
    assert retry.json()["id"] == PaymentRequest.objects.get().pk
