"""Sending a request from the agent desk: the Extensions button, the pop-up form, bad input, idempotency,
one live request per order, delivery over the conversation's channel, and who may do it."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client

from desk.models import Conversation, Message
from payments import actions
from payments.lifecycle import Status
from payments.models import PaymentEvent, PaymentRequest
from tests.factories import ConversationFactory
from tests.payments.conftest import reload, send, token_of

pytestmark = pytest.mark.django_db


def form_url(conversation) -> str:
    return f"/desk/conversations/{conversation.pk}/chat2pay/"


def valid_data(client: Client, conversation, **overrides) -> dict:
    """The form as the agent's browser would submit it (the idempotency key comes from the rendered form)."""
    page = client.get(form_url(conversation)).content.decode()
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page)[1]
    return {
        "phone": "+27 82 123 4567",
        "amount": "120.50",
        "currency": "ZAR",
        "order_number": "A-1001",
        "description": "Two tickets",
        "idempotency_key": key,
        **overrides,
    }


@pytest.fixture
def alice_client(client, alice) -> Client:
    client.force_login(alice)
    return client


class TestTheForm:
    def test_the_assigned_agent_sees_the_extensions_button(self, alice_client, alices_conversation):
        page = alice_client.get(f"/desk/conversations/{alices_conversation.pk}/").content.decode()
        assert 'aria-label="Extensions"' in page

    @pytest.mark.parametrize("status", ["pending", "closed"])
    def test_there_is_no_extensions_button_unless_the_chat_is_open(self, alice_client, alice, status):
        conversation = ConversationFactory(
            status=status, assigned_agent=alice if status == "closed" else None
        )
        page = alice_client.get(f"/desk/conversations/{conversation.pk}/").content.decode()
        assert 'aria-label="Extensions"' not in page

    def test_the_extensions_dialog_offers_the_chat_2_pay_card(self, alice_client, alices_conversation):
        response = alice_client.get(f"/desk/conversations/{alices_conversation.pk}/extensions/")
        html = response.content.decode()
        assert "<dialog" in html
        assert 'aria-label="Chat 2 Pay"' in html
        assert form_url(alices_conversation) in html

    def test_the_form_has_the_customers_phone_and_the_default_currency(
        self, alice_client, alices_conversation, settings
    ):
        settings.CHAT2PAY_DEFAULT_CURRENCY = "USD"
        html = alice_client.get(form_url(alices_conversation)).content.decode()
        for label in ("Phone number", "Amount", "Currency", "Order number", "Description"):
            assert f">{label}" in html
        assert f'value="{alices_conversation.customer.phone}"' in html
        assert re.search(r'<option value="USD" selected>', html)
        assert re.search(r'name="idempotency_key" value="[0-9a-f]{32}"', html)
        assert ">Send</button>" in html

    def test_each_rendered_form_gets_its_own_idempotency_key(self, alice_client, alices_conversation):
        first, second = (valid_data(alice_client, alices_conversation)["idempotency_key"] for _ in range(2))
        assert first != second


class TestSending:
    def test_send_posts_the_card_and_delivers_the_link_to_the_customer(
        self, alice_client, alice, alices_conversation, django_capture_on_commit_callbacks
    ):
        # When alice fills in the form and presses Send
        with django_capture_on_commit_callbacks() as callbacks:
            response = alice_client.post(
                form_url(alices_conversation), valid_data(alice_client, alices_conversation)
            )

        # Then one request exists, sent, with a history row, and the live hints wait for the commit
        assert response.status_code == 200
        payment_request = PaymentRequest.objects.get()
        assert (payment_request.status, payment_request.amount, payment_request.phone) == (
            Status.SENT,
            Decimal("120.50"),
            "+27821234567",
        )
        assert payment_request.events.get().reason == "sent"
        assert callbacks  # message.created and payment.request_changed, only after commit
        # And the dialog is replaced by the new card (filed into the transcript) and a toast
        assert response["HX-Retarget"] == "#modal-slot"
        html = response.content.decode()
        assert f'data-container="transcript-{alices_conversation.pk}"' in html
        assert 'data-status="sent"' in html
        assert 'data-order-number="A-1001"' in html
        assert 'role="status"' in html
        assert "A-1001" in html
        # And the customer's transcript has the link message naming the order and the amount
        message = payment_request.message
        assert (message.kind, message.direction, message.author) == (Message.Kind.PAYMENT, "outbound", alice)
        assert "order A-1001" in message.body
        assert "ZAR 120.50" in message.body
        assert f"http://testserver/pay/{token_of(payment_request)}/" in message.body
        chat = Client().get(f"/chat/{alices_conversation.customer_token}/").content.decode()
        assert f'href="http://testserver/pay/{token_of(payment_request)}/"' in chat

    def test_the_token_is_long_random_and_stored_only_as_a_hash(self, alice, alices_conversation):
        payment_request = send(alices_conversation, alice)
        token = token_of(payment_request)
        assert len(token) >= 43  # 256 bits, base64url
        assert token not in str(PaymentRequest.objects.filter(pk=payment_request.pk).values().get())
        assert str(payment_request.pk) != token

    def test_a_double_submitted_form_creates_one_request(self, alice_client, alices_conversation):
        data = valid_data(alice_client, alices_conversation)
        first = alice_client.post(form_url(alices_conversation), data)
        second = alice_client.post(form_url(alices_conversation), data)
        assert first.status_code == second.status_code == 200
        assert PaymentRequest.objects.count() == 1
        assert Message.objects.filter(kind=Message.Kind.PAYMENT).count() == 1

    def test_a_second_live_request_for_an_order_is_refused_naming_the_first(
        self, alice_client, alice, alices_conversation
    ):
        send(alices_conversation, alice, order_number="A-1001")
        response = alice_client.post(
            form_url(alices_conversation), valid_data(alice_client, alices_conversation)
        )
        assert response.status_code == 422
        html = response.content.decode()
        assert "Order A-1001 already has a live payment request (sent by Alice Agent" in html
        assert PaymentRequest.objects.count() == 1

    def test_a_closed_request_frees_its_order_number(self, alice, alices_conversation):
        first = send(alices_conversation, alice, order_number="A-1001")
        actions.cancel_payment_request(first.pk, agent=alice)
        second = send(alices_conversation, alice, order_number="A-1001")
        assert second.status == Status.SENT

    def test_an_overdue_request_does_not_block_its_order_even_before_the_sweep(
        self, alice, alices_conversation
    ):
        import time_machine
        from django.utils import timezone

        first = send(alices_conversation, alice, order_number="A-1001")
        with time_machine.travel(timezone.now() + timezone.timedelta(minutes=6)):
            second = send(alices_conversation, alice, order_number="A-1001")
        assert (reload(first).status, second.status) == (Status.EXPIRED, Status.SENT)

    def test_a_link_that_the_channel_cannot_carry_is_failed(self, alice):
        conversation = ConversationFactory(
            status="open", assigned_agent=alice, channel=Conversation.Channel.WHATSAPP
        )
        payment_request = send(conversation, alice)
        assert payment_request.status == Status.FAILED
        assert "WhatsApp channel is not connected" in payment_request.failure_reason
        assert list(payment_request.events.values_list("to_status", flat=True)) == ["sent", "failed"]

    @pytest.mark.parametrize(
        ("amount", "currency", "stored"), [("1500", "JPY", "1500"), ("3.125", "KWD", "3.125")]
    )
    def test_amounts_keep_their_currencys_minor_units(
        self, alice_client, alices_conversation, amount, currency, stored
    ):
        data = valid_data(alice_client, alices_conversation, amount=amount, currency=currency)
        assert alice_client.post(form_url(alices_conversation), data).status_code == 200
        assert PaymentRequest.objects.get().amount == Decimal(stored)


class TestBadInput:
    @pytest.mark.parametrize(
        ("field", "value", "error"),
        [
            ("amount", "0", "greater than zero"),
            ("amount", "-5", "greater than zero"),
            ("amount", "12.345", "ZAR amounts have at most 2 decimal places"),
            ("amount", "abc", "Enter an amount in numbers"),
            ("amount", "1e3", "Enter an amount in numbers"),
            ("amount", "12,50", "Enter an amount in numbers"),
            ("amount", "NaN", "Enter an amount in numbers"),
            ("amount", "", "This field is required"),
            ("amount", "1000000.01", "The most a single request may ask for is ZAR 1,000,000.00"),
            ("currency", "XXX", "Choose one of the listed currencies"),
            ("currency", "", "This field is required"),
            ("phone", "12345", "Enter a valid phone number"),
            ("phone", "not a phone", "Enter a valid phone number"),
            ("phone", "+27 82 123 4567 8888 9999 0000 1111", "at most 32 characters"),
            ("order_number", "", "This field is required"),
            ("order_number", "   ", "This field is required"),
            ("order_number", "A" * 41, "at most 40 characters"),
            ("order_number", "<script>", "Use letters, digits"),
            ("description", "d" * 201, "at most 200 characters"),
            ("idempotency_key", "not-a-key", "This form is out of date"),
        ],
    )
    def test_each_bad_value_gets_a_clear_inline_error_and_nothing_is_created(
        self, alice_client, alices_conversation, field, value, error
    ):
        data = valid_data(alice_client, alices_conversation, **{field: value})
        response = alice_client.post(form_url(alices_conversation), data)
        assert response.status_code == 422
        html = response.content.decode()
        assert error in html.replace("&#x27;", "'")
        assert 'id="chat2pay-form"' in html  # the form itself, swapped in place
        if field != "idempotency_key":
            assert 'aria-invalid="true"' in html
        assert not PaymentRequest.objects.exists()
        assert not Message.objects.filter(kind=Message.Kind.PAYMENT).exists()

    @pytest.mark.parametrize(
        ("amount", "error"),
        [("1500.5", "JPY amounts have no decimal places"), ("1.2345", "KWD amounts have at most 3")],
    )
    def test_decimals_follow_the_currency(self, alice_client, alices_conversation, amount, error):
        currency = "JPY" if "JPY" in error else "KWD"
        data = valid_data(alice_client, alices_conversation, amount=amount, currency=currency)
        response = alice_client.post(form_url(alices_conversation), data)
        assert response.status_code == 422
        assert error in response.content.decode()

    def test_the_maximum_is_configurable(self, alice_client, alices_conversation, settings):
        settings.CHAT2PAY_MAX_AMOUNT = Decimal("100")
        response = alice_client.post(
            form_url(alices_conversation), valid_data(alice_client, alices_conversation)
        )
        assert response.status_code == 422
        assert "ZAR 100.00" in response.content.decode()


class TestWhoMaySend:
    def test_another_agent_gets_403(self, client, bob, alices_conversation):
        client.force_login(bob)
        for url in (
            form_url(alices_conversation),
            f"/desk/conversations/{alices_conversation.pk}/extensions/",
        ):
            assert client.get(url).status_code == 403
        assert client.post(form_url(alices_conversation), {"amount": "1"}).status_code == 403
        assert not PaymentRequest.objects.exists()

    def test_a_supervisor_gets_403(self, client, sam, alices_conversation):
        client.force_login(sam)
        assert client.get(form_url(alices_conversation)).status_code == 403
        assert client.post(form_url(alices_conversation), {"amount": "1"}).status_code == 403

    def test_a_user_without_a_role_gets_403_and_a_visitor_is_sent_to_log_in(
        self, client, outsider, alices_conversation
    ):
        assert client.post(form_url(alices_conversation)).status_code == 302
        client.force_login(outsider)
        assert client.post(form_url(alices_conversation)).status_code == 403

    def test_an_agent_cannot_send_in_a_queued_chat(self, alice_client, pending_conversation):
        assert alice_client.get(form_url(pending_conversation)).status_code == 403

    def test_the_action_itself_refuses_a_chat_that_is_not_the_agents_open_one(self, bob, alices_conversation):
        with pytest.raises(actions.SendRefused):
            send(alices_conversation, bob)
        assert not PaymentEvent.objects.exists()
