"""WhatsApp Cloud API: a full Chat 2 Pay request over a local Graph API stand-in, the outbox's retries and
failures, and the signed webhook (handshake, valid, invalid, replayed and malformed)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from desk import actions as desk_actions
from desk.messaging import outbox
from desk.messaging.models import InboundWebhookEvent, OutboundDelivery
from desk.messaging.tasks import deliver_due_outbound_task
from desk.models import Conversation, Message
from payments import actions as payment_actions
from payments.lifecycle import Status
from tests.payments.conftest import reload, send, token_of

from .conftest import VERIFY_TOKEN, post_whatsapp, wa_message, wa_status

PHONE = "+27821234567"
pytestmark = pytest.mark.django_db(transaction=True)  # real commits: the outbox runs on commit


def customer_writes(text: str = "Hi, I want to pay for my order", **kwargs) -> Conversation:
    assert post_whatsapp(wa_message(PHONE, text, **kwargs)).status_code == 200
    return Conversation.objects.filter(customer__phone=PHONE, channel="whatsapp").latest("pk")


def open_chat(agent) -> Conversation:
    conversation = customer_writes()
    desk_actions.accept_conversation(conversation.pk, agent=agent)
    return conversation


def delivery_of(message: Message) -> OutboundDelivery:
    return OutboundDelivery.objects.get(message=message)


class TestPaymentRequestOverWhatsApp:
    def test_the_link_goes_out_as_text_inside_the_window_and_statuses_reach_the_agent(
        self, whatsapp_api, alice
    ):
        conversation = open_chat(alice)
        assert conversation.customer.name == "Thandi"
        payment_request = send(conversation, alice, order_number="A-1001")

        [sent] = whatsapp_api.sent()
        assert sent["to"] == "27821234567"
        assert sent["type"] == "text"
        assert f"/pay/{token_of(payment_request)}/" in sent["text"]["body"]
        delivery = delivery_of(payment_request.message)
        assert delivery.state == OutboundDelivery.State.ACCEPTED
        assert delivery.provider_message_id
        assert reload(payment_request).status == Status.SENT

        for status in ("sent", "delivered", "read"):
            assert post_whatsapp(wa_status(delivery.provider_message_id, status)).status_code == 200
        delivery.refresh_from_db()
        assert delivery.delivery_status == "read"
        # The agent's transcript shows it.
        alice_client = Client()
        alice_client.force_login(alice)
        page = alice_client.get(f"/desk/conversations/{conversation.pk}/").content.decode()
        assert 'data-delivery="read"' in page

    def test_outside_the_24_hour_window_link_and_cancel_notice_go_out_as_templates(self, whatsapp_api, alice):
        with time_machine.travel(timezone.now() - timedelta(hours=25), tick=False):
            conversation = open_chat(alice)
        payment_request = send(conversation, alice, order_number="A-2002")
        payment_actions.cancel_payment_request(payment_request.pk, agent=alice)

        link, notice = whatsapp_api.sent()
        assert link["type"] == "template"
        assert link["template"]["name"] == "chat2pay_link"
        order, amount, url = [p["text"] for p in link["template"]["components"][0]["parameters"]]
        assert (order, url) == ("A-2002", f"http://testserver/pay/{token_of(payment_request)}/")
        assert "120.50" in amount
        assert notice["type"] == "template"
        assert notice["template"]["name"] == "chat2pay_canceled"
        assert notice["template"]["components"][0]["parameters"] == [{"type": "text", "text": "A-2002"}]
        assert notice["template"]["language"] == {"code": "en"}
        cancel_delivery = OutboundDelivery.objects.get(purpose="cancel_notice")
        assert cancel_delivery.sent_as_template == "chat2pay_canceled"
        assert reload(payment_request).status == Status.CANCELED

    def test_an_agents_reply_goes_out_as_text(self, whatsapp_api, alice):
        conversation = open_chat(alice)
        desk_actions.send_agent_message(conversation.pk, agent=alice, body="Sending the link now")
        assert whatsapp_api.sent()[0]["text"]["body"] == "Sending the link now"


class TestFailures:
    def test_a_refused_send_fails_the_request_with_whatsapps_reason(self, whatsapp_api, alice):
        conversation = open_chat(alice)
        whatsapp_api.refuse["27821234567"] = whatsapp_api.re_engagement_error()
        payment_request = reload(send(conversation, alice))
        assert payment_request.status == Status.FAILED
        assert "24 hours have passed" in payment_request.failure_reason
        assert "#131047" in payment_request.failure_reason
        assert delivery_of(payment_request.message).state == OutboundDelivery.State.FAILED
        assert len(whatsapp_api.sent()) == 1  # a permanent refusal is never retried

    def test_an_invalid_number_fails_the_request(self, whatsapp_api, alice):
        conversation = open_chat(alice)
        whatsapp_api.refuse["27821234567"] = whatsapp_api.invalid_number_error()
        payment_request = reload(send(conversation, alice))
        assert payment_request.status == Status.FAILED
        assert "not a WhatsApp user" in payment_request.failure_reason

    def test_temporary_failures_are_retried_with_backoff_and_sent_once(self, whatsapp_api, alice):
        conversation = open_chat(alice)
        whatsapp_api.fail_next = 2
        payment_request = send(conversation, alice)
        delivery = delivery_of(payment_request.message)
        assert (delivery.state, delivery.attempts) == (OutboundDelivery.State.PENDING, 1)
        assert delivery.next_attempt_at > timezone.now()
        assert deliver_due_outbound_task() == 0  # not due during its backoff

        with time_machine.travel(timezone.now(), tick=False) as clock:
            for expected_wait in (5, 10):  # exponential backoff
                delivery.refresh_from_db()
                assert delivery.next_attempt_at - timezone.now() == pytest.approx(
                    timedelta(seconds=expected_wait), abs=timedelta(seconds=1)
                )
                clock.move_to(delivery.next_attempt_at + timedelta(seconds=1))
                assert deliver_due_outbound_task() == 1
            delivery.refresh_from_db()
            assert (delivery.state, delivery.attempts) == (OutboundDelivery.State.ACCEPTED, 3)
            # Accepted once: no later sweep or duplicate task sends it again.
            outbox.deliver(delivery.pk)
            clock.shift(timedelta(hours=1))
            assert deliver_due_outbound_task() == 0
        assert len(whatsapp_api.sent()) == 3
        assert reload(payment_request).status == Status.SENT

    def test_retries_exhausted_fail_the_request(self, whatsapp_api, alice, settings):
        settings.MESSAGING_MAX_ATTEMPTS = 3
        conversation = open_chat(alice)
        whatsapp_api.fail_next = 100
        payment_request = send(conversation, alice)
        with time_machine.travel(timezone.now(), tick=False) as clock:
            for _ in range(2):
                clock.shift(timedelta(hours=1))
                deliver_due_outbound_task()
        payment_request = reload(payment_request)
        assert len(whatsapp_api.sent()) == 3
        assert payment_request.status == Status.FAILED
        assert payment_request.failure_reason.startswith("Not delivered after 3 attempts")

    def test_a_lost_task_is_picked_up_by_the_sweep(self, whatsapp_api, alice, monkeypatch):
        conversation = open_chat(alice)
        from desk.messaging import tasks

        monkeypatch.setattr(
            tasks.deliver_outbound_task, "delay_on_commit", lambda *args: None
        )  # the broker lost it
        payment_request = send(conversation, alice)
        assert whatsapp_api.sent() == []
        assert deliver_due_outbound_task() == 1
        assert delivery_of(payment_request.message).state == OutboundDelivery.State.ACCEPTED

    def test_a_worker_killed_mid_send_is_resent_once_its_lease_runs_out(
        self, whatsapp_api, alice, monkeypatch
    ):
        """Reliability scenario 32: killed after claiming the row (before or after the provider call, before
        the id was stored). The row stays claimed until its lease ends, then the sweep sends it once."""
        conversation = open_chat(alice)
        from desk.messaging import tasks

        monkeypatch.setattr(tasks.deliver_outbound_task, "delay_on_commit", lambda *args: None)
        payment_request = send(conversation, alice)
        delivery = delivery_of(payment_request.message)
        assert outbox._claim(delivery.pk, timezone.now()) is not None  # the worker claimed it, then died
        assert deliver_due_outbound_task() == 0  # still leased: nobody else sends it meanwhile
        with time_machine.travel(timezone.now() + outbox.lease() + timedelta(seconds=1)):
            assert deliver_due_outbound_task() == 1
            assert deliver_due_outbound_task() == 0
        delivery.refresh_from_db()
        assert (delivery.state, delivery.attempts) == (OutboundDelivery.State.ACCEPTED, 2)
        assert len(whatsapp_api.sent()) == 1

    def test_a_failed_status_after_acceptance_is_shown_but_the_link_stays_sent(self, whatsapp_api, alice):
        conversation = open_chat(alice)
        payment_request = send(conversation, alice)
        provider_id = delivery_of(payment_request.message).provider_message_id
        error = {
            "code": 131026,
            "title": "Message undeliverable",
            "error_data": {"details": "Phone unreachable"},
        }
        post_whatsapp(wa_status(provider_id, "failed", error=error))
        post_whatsapp(wa_status(provider_id, "delivered"))  # late, out of order: ignored
        delivery = delivery_of(payment_request.message)
        assert delivery.delivery_status == "failed"
        assert "Phone unreachable" in delivery.error
        assert reload(payment_request).status == Status.SENT


class TestWebhook:
    def test_the_subscription_handshake(self, whatsapp_api):
        query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
        response = Client().get("/webhooks/whatsapp/", query)
        assert (response.status_code, response.content) == (200, b"1158201444")
        assert Client().get("/webhooks/whatsapp/", query | {"hub.verify_token": "wrong"}).status_code == 403

    @pytest.mark.parametrize(
        "signature",
        ["", "sha256=", "sha256=" + "0" * 64, "md5=abc", "not a signature", "sha256=zz"],
    )
    def test_a_bad_signature_is_refused_and_changes_nothing(self, whatsapp_api, signature):
        response = post_whatsapp(wa_message(PHONE, "hello"), signature=signature)
        assert response.status_code == 400
        assert not Conversation.objects.exists()
        assert not InboundWebhookEvent.objects.exists()

    def test_a_signature_made_with_another_secret_or_for_another_body_is_refused(self, whatsapp_api):
        from desk.messaging import whatsapp

        body = wa_message(PHONE, "hello")
        assert post_whatsapp(body, signature=whatsapp.sign(body, "other-secret")).status_code == 400
        assert post_whatsapp(body, signature=whatsapp.sign(body + b" ", None)).status_code == 400
        assert not Conversation.objects.exists()

    def test_csrf_is_not_required(self, whatsapp_api):
        client = Client(enforce_csrf_checks=True)
        assert post_whatsapp(wa_message(PHONE, "hello"), client=client).status_code == 200

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"not json",
            b"[]",
            b'{"entry": 5}',
            b'{"entry": [{"changes": [{"value": {"messages": [{"id": "x"}]}}]}]}',
        ],
    )
    def test_a_malformed_body_with_a_valid_signature_is_refused(self, whatsapp_api, body):
        assert post_whatsapp(body).status_code == 400
        assert not Conversation.objects.exists()
        assert not InboundWebhookEvent.objects.exists()

    def test_a_replayed_message_is_applied_once(self, whatsapp_api):
        body = wa_message(PHONE, "hello", message_id="wamid.same")
        assert post_whatsapp(body).status_code == 200
        assert post_whatsapp(body).json()["outcomes"] == ["duplicate"]
        assert Message.objects.filter(direction="inbound").count() == 1

    def test_a_second_message_continues_the_conversation_and_a_closed_one_starts_anew(
        self, whatsapp_api, alice
    ):
        conversation = open_chat(alice)
        assert customer_writes("second").pk == conversation.pk
        desk_actions.close_conversation(conversation.pk, agent=alice)
        assert customer_writes("after close").pk != conversation.pk

    def test_shuffled_and_duplicated_statuses_end_at_the_furthest(self, whatsapp_api, alice):
        conversation = open_chat(alice)
        message = desk_actions.send_agent_message(conversation.pk, agent=alice, body="hi")
        provider_id = delivery_of(message).provider_message_id
        for status in ("read", "sent", "delivered", "read", "sent"):
            assert post_whatsapp(wa_status(provider_id, status)).status_code == 200
        assert delivery_of(message).delivery_status == "read"
        assert InboundWebhookEvent.objects.filter(kind="status").count() == 3


def test_simultaneous_first_messages_open_one_conversation(whatsapp_api):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def write(i: int) -> int:
        try:
            return post_whatsapp(wa_message(PHONE, f"hello {i}")).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(write, range(6))) == {200}
    assert Conversation.objects.count() == 1
    assert Message.objects.filter(direction="inbound").count() == 6
