"""Clickatell One API: a full Chat 2 Pay request over SMS and over WhatsApp against a local stand-in, SMS
segment limits, and the callback endpoint's shared secret (valid, invalid, replayed, malformed)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from desk import actions as desk_actions
from desk.messaging import sms
from desk.messaging.models import InboundWebhookEvent, OutboundDelivery
from desk.models import Conversation, Message
from payments import actions as payment_actions
from payments.lifecycle import Status
from tests.payments.conftest import reload, send, token_of

from .conftest import CLICKATELL_SECRET, ck_callback, ck_message, ck_status, post_clickatell

PHONE = "+27829876543"
pytestmark = pytest.mark.django_db(transaction=True)  # real commits: the outbox runs on commit


def open_chat(agent, channel: str = "sms") -> Conversation:
    assert post_clickatell(ck_message(PHONE, "Hi, can I pay by link?", channel=channel)).status_code == 200
    conversation = Conversation.objects.get(customer__phone=PHONE, channel=channel)
    desk_actions.accept_conversation(conversation.pk, agent=agent)
    return conversation


class TestPaymentRequestOverClickatell:
    def test_sms_link_delivery_receipt_and_cancel_notice(self, clickatell_api, alice):
        conversation = open_chat(alice)
        payment_request = send(conversation, alice, order_number="B-3003")
        [[link]] = [m["messages"] for m in clickatell_api.sent()]
        assert (link["channel"], link["to"]) == ("sms", "27829876543")
        assert f"/pay/{token_of(payment_request)}/" in link["content"]
        assert clickatell_api.requests[0]["headers"]["Authorization"] == "ck-test-key"

        delivery = OutboundDelivery.objects.get(message=payment_request.message)
        assert post_clickatell(ck_status(delivery.provider_message_id, "DEVICE_ACK")).status_code == 200
        delivery.refresh_from_db()
        assert delivery.delivery_status == "delivered"

        payment_actions.cancel_payment_request(payment_request.pk, agent=alice)
        notice = clickatell_api.sent()[1]["messages"][0]
        assert notice["content"] == "The B-3003 has been canceled by the Agent"  # SMS has no window

    def test_whatsapp_via_clickatell_uses_templates_outside_the_window(self, clickatell_api, alice, settings):
        settings.MESSAGING_WHATSAPP_PROVIDER = "clickatell"
        with time_machine.travel(timezone.now() - timedelta(days=2), tick=False):
            conversation = open_chat(alice, channel="whatsapp")
        payment_request = send(conversation, alice, order_number="B-4004")
        payment_actions.cancel_payment_request(payment_request.pk, agent=alice)
        link, notice = (m["messages"][0] for m in clickatell_api.sent())
        assert link["channel"] == "whatsapp"
        assert link["template"]["templateName"] == "chat2pay_link"
        assert link["template"]["body"]["parameters"]["1"] == "B-4004"
        assert link["template"]["body"]["parameters"]["3"].endswith(f"/pay/{token_of(payment_request)}/")
        assert notice["template"] == {
            "templateName": "chat2pay_canceled",
            "body": {"parameters": {"1": "B-4004"}},
        }

    def test_a_refused_number_fails_the_request_with_clickatells_reason(self, clickatell_api, alice):
        conversation = open_chat(alice)
        clickatell_api.refuse["27829876543"] = (114, "Invalid destination address")
        payment_request = reload(send(conversation, alice))
        assert payment_request.status == Status.FAILED
        assert "Invalid destination address" in payment_request.failure_reason

    def test_an_sms_too_long_is_refused_before_it_is_sent(self, clickatell_api, alice, settings):
        settings.CLICKATELL_SMS_MAX_SEGMENTS = 1
        conversation = open_chat(alice)
        message = desk_actions.send_agent_message(conversation.pk, agent=alice, body="x" * 161)
        delivery = OutboundDelivery.objects.get(message=message)
        assert delivery.state == "failed"
        assert "2 SMS parts (GSM-7)" in delivery.error
        assert clickatell_api.sent() == []


class TestCallbacks:
    @pytest.mark.parametrize("secret", [None, "", "wrong", CLICKATELL_SECRET + "x", CLICKATELL_SECRET[:-1]])
    def test_a_bad_secret_is_refused_and_changes_nothing(self, clickatell_api, secret):
        assert post_clickatell(ck_message(PHONE, "hello"), secret=secret).status_code == 400
        assert not Conversation.objects.exists()
        assert not InboundWebhookEvent.objects.exists()

    def test_the_secret_may_come_as_a_header(self, clickatell_api):
        from django.test import Client

        response = Client(enforce_csrf_checks=True).post(
            "/webhooks/clickatell/",
            data=ck_message(PHONE, "hello"),
            content_type="application/json",
            headers={"X-Clickatell-Secret": CLICKATELL_SECRET},
        )
        assert response.status_code == 200

    @pytest.mark.parametrize(
        "body", [b"", b"{", b"[]", b'{"event": []}', b"{}", b'{"event": {"moText": [{"content": "x"}]}}']
    )
    def test_a_malformed_body_is_refused(self, clickatell_api, body):
        assert post_clickatell(body).status_code == 400
        assert not Conversation.objects.exists()

    def test_replayed_message_and_status_are_applied_once(self, clickatell_api, alice):
        body = ck_message(PHONE, "hello", message_id="mo-1")
        post_clickatell(body)
        assert post_clickatell(body).json()["outcomes"] == ["duplicate"]
        assert Message.objects.filter(direction="inbound").count() == 1
        conversation = Conversation.objects.get()
        desk_actions.accept_conversation(conversation.pk, agent=alice)
        message = desk_actions.send_agent_message(conversation.pk, agent=alice, body="hi")
        provider_id = OutboundDelivery.objects.get(message=message).provider_message_id
        status = ck_status(provider_id, "SENT_TO_SUPPLIER")
        assert post_clickatell(status).json()["outcomes"] == ["applied"]
        assert post_clickatell(status).json()["outcomes"] == ["duplicate"]
        post_clickatell(ck_status(provider_id, "", code=5))  # no name: the code (5 DEVICE_ACK) decides
        assert OutboundDelivery.objects.get(message=message).delivery_status == "delivered"


class TestOneApiCallbackShapes:
    """The documented callback bodies (One API client callbacks and its Message Status Table)."""

    def test_a_media_reply_shows_a_placeholder_not_the_base64_file(self, clickatell_api):
        media = {
            "channel": "whatsapp ",  # sic: Clickatell's own sample has the trailing space
            "messageId": "7ed16cedd7ca7c4d252c7ec854dec3cb",
            "from": PHONE.lstrip("+"),
            "to": "27870000000",
            "timestamp": 1506607698000,
            "contentType": "image/jpeg",
            "content": "/9j/4AAQSkZJRgABAQAAAQABAAD",
            "caption": "",
            "whatsapp": {"profileName": "Thandi"},
        }
        assert post_clickatell(ck_callback({"moMedia": [media]})).json()["outcomes"] == ["applied"]
        message = Message.objects.get(direction="inbound")
        assert message.body == "[media message]"
        assert message.conversation.channel == "whatsapp"
        assert message.conversation.customer.name == "Thandi"

    @pytest.mark.parametrize(
        ("status", "code", "expected"),
        [
            ("SENT_TO_SUPPLIER", 4, "sent"),
            ("DEVICE_ACK", 5, "delivered"),
            ("DEVICE_ACK", 4, "delivered"),  # the name wins (Clickatell's FAQ sample pairs it with 4)
            ("READ", 6, "read"),
            ("DELIVERY_FAILURE", 23, "failed"),
            ("WHATSAPP_RE_ENGAGEMENT_REQUIRED", 131, "failed"),
            ("", 29, "failed"),
            ("QUEUED", 2, ""),
            ("SOMETHING_NEW", 7, ""),
        ],
    )
    def test_statuses_follow_the_message_status_table(self, clickatell_api, alice, status, code, expected):
        conversation = open_chat(alice)
        message = desk_actions.send_agent_message(conversation.pk, agent=alice, body="hi")
        delivery = OutboundDelivery.objects.get(message=message)
        response = post_clickatell(ck_status(delivery.provider_message_id, status, code=code))
        assert response.status_code == 200
        delivery.refresh_from_db()
        assert delivery.delivery_status == expected
        if expected == "failed":
            assert delivery.error.startswith("Clickatell: ")

    def test_an_event_kind_we_do_not_know_is_acknowledged(self, clickatell_api):
        response = post_clickatell(ck_callback({"somethingNew": [{"messageId": "x"}]}))
        assert response.status_code == 200
        assert response.json()["outcomes"] == []


class TestSmsSegments:
    @pytest.mark.parametrize(
        ("text", "encoding", "parts"),
        [
            ("a" * 160, "GSM-7", 1),
            ("a" * 161, "GSM-7", 2),
            ("a" * 306, "GSM-7", 2),
            ("a" * 307, "GSM-7", 3),
            ("€" * 80, "GSM-7", 1),  # extension characters count twice
            ("€" * 81, "GSM-7", 2),
            ("é" * 160, "GSM-7", 1),
            ("ê" * 70, "UCS-2", 1),
            ("ê" * 71, "UCS-2", 2),
            ("ê" * 134, "UCS-2", 2),
            ("ê" * 135, "UCS-2", 3),
            ("😀" * 35, "UCS-2", 1),  # a surrogate pair is two UCS-2 units
            ("😀" * 36, "UCS-2", 2),
        ],
    )
    def test_limits(self, text, encoding, parts):
        assert sms.encoding_for(text).name == encoding
        split = sms.split(text)
        assert len(split) == parts
        assert "".join(split) == text

    def test_an_escape_sequence_is_never_split(self):
        parts = sms.split("a" * 152 + "€" + "b" * 10)
        assert parts[0] == "a" * 152
        assert parts[1].startswith("€")
