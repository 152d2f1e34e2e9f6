"""Cancel from the payment card: the toast says what happened; a refusal changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from desk.models import Message
from payments import actions
from payments.lifecycle import Status
from tests.payments.conftest import make_request, reload, send, token_of

pytestmark = pytest.mark.django_db


def cancel_url(payment_request) -> str:
    return f"/desk/payments/{payment_request.pk}/cancel/"


@pytest.fixture
def alice_client(client, alice) -> Client:
    client.force_login(alice)
    return client


def test_the_card_offers_cancel_only_while_the_request_can_be_canceled(
    alice_client, alice, alices_conversation
):
    payment_request = send(alices_conversation, alice)
    page = alice_client.get(f"/desk/conversations/{alices_conversation.pk}/").content.decode()
    assert "Cancel payment" in page
    actions.register_click(payment_request.pk)
    page = alice_client.get(f"/desk/conversations/{alices_conversation.pk}/").content.decode()
    assert 'data-status="clicked"' in page
    assert "Cancel payment" not in page


def test_a_successful_cancel_shows_a_toast_and_tells_the_customer(alice_client, alice, alices_conversation):
    # Given a link the customer has not opened
    payment_request = send(alices_conversation, alice, order_number="A-77")

    # When alice presses "Cancel payment"
    response = alice_client.post(cancel_url(payment_request))

    # Then the card comes back canceled, without the button, and a success toast says so
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-status="canceled"' in html
    assert "Cancel payment" not in html
    assert 'role="status"' in html
    assert "Payment request for order A-77 canceled." in html
    # And the customer gets exactly the vendor's words, and the link is dead
    assert Message.objects.latest("pk").body == "The A-77 has been canceled by the Agent"
    page = Client().get(f"/pay/{token_of(payment_request)}/")
    assert page.status_code == 410
    assert "Payment link canceled" in page.content.decode()


@pytest.mark.parametrize(
    ("setup", "toast"),
    [
        ("clicked", "The customer has already clicked the link."),
        ("paid", "The customer has already clicked the link."),
        ("canceled", "The link is already canceled."),
        ("expired", "The link has expired."),
        ("overdue", "The link has expired."),
    ],
)
def test_a_refused_cancel_explains_why_and_changes_nothing(alice_client, alice, setup, toast):
    # Given a request the customer opened or paid, or one already canceled or expired (or overdue, unswept)
    if setup == "overdue":
        payment_request = make_request(
            Status.SENT, agent=alice, click_deadline=timezone.now() - timedelta(seconds=1)
        )
    else:
        payment_request = make_request(setup, agent=alice)
    messages = Message.objects.count()

    # When alice presses "Cancel payment"
    response = alice_client.post(cancel_url(payment_request))

    # Then a 409 toast explains the refusal, and nothing changed
    assert response.status_code == 409
    html = response.content.decode()
    assert 'role="status"' in html
    assert toast in html
    after = reload(payment_request)
    assert (after.status, after.version) == (payment_request.status, payment_request.version)
    assert Message.objects.count() == messages
    assert not after.events.exists()


def test_canceling_exactly_at_the_click_deadline_is_refused(alice_client, alice, alices_conversation):
    payment_request = send(alices_conversation, alice)
    with time_machine.travel(payment_request.click_deadline, tick=False):
        response = alice_client.post(cancel_url(payment_request))
    assert response.status_code == 409
    assert "The link has expired." in response.content.decode()
    assert reload(payment_request).status == Status.SENT  # the sweep will make it expired


def test_a_second_cancel_is_told_it_is_already_canceled(alice_client, alice, alices_conversation):
    payment_request = send(alices_conversation, alice)
    assert alice_client.post(cancel_url(payment_request)).status_code == 200
    response = alice_client.post(cancel_url(payment_request))
    assert response.status_code == 409
    assert "The link is already canceled." in response.content.decode()
    assert Message.objects.filter(body__endswith="has been canceled by the Agent").count() == 1


def test_another_agent_and_a_supervisor_get_403(client, bob, sam, alice, alices_conversation):
    payment_request = send(alices_conversation, alice)
    client.force_login(bob)
    assert client.post(cancel_url(payment_request)).status_code == 403
    client.force_login(sam)
    assert client.post(cancel_url(payment_request)).status_code == 403
    assert reload(payment_request).status == Status.SENT
    client.force_login(alice)
    assert client.post(f"/desk/payments/{payment_request.pk + 1000}/cancel/").status_code == 404


def test_a_supervisor_sees_the_card_without_the_cancel_button(client, sam, alice, alices_conversation):
    send(alices_conversation, alice)
    client.force_login(sam)
    page = client.get(f"/supervisor/conversations/{alices_conversation.pk}/").content.decode()
    assert 'data-status="sent"' in page
    assert "Cancel payment" not in page


def test_cancel_needs_a_post_with_the_csrf_token(alice, alices_conversation):
    payment_request = send(alices_conversation, alice)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.get(cancel_url(payment_request)).status_code == 405
    assert browser.post(cancel_url(payment_request)).status_code == 403
    assert reload(payment_request).status == Status.SENT
