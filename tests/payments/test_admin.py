"""The admin shows Chat 2 Pay and cannot rewrite it: status and history are read-only, history even in SQL."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from payments.models import BusinessProfile, PaymentEvent
from tests.factories import UserFactory
from tests.payments.conftest import send

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_a_request_and_its_history_are_shown_read_only(admin_client, alice, alices_conversation):
    payment_request = send(alices_conversation, alice, order_number="A-9")
    page = admin_client.get(f"/admin/payments/paymentrequest/{payment_request.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "A-9" in html
    assert "Agent sent the payment link" in html
    assert 'name="status"' not in html  # no editable status
    assert "token_hash" not in html
    response = admin_client.post(
        f"/admin/payments/paymentrequest/{payment_request.pk}/change/", {"status": "paid"}
    )
    assert response.status_code == 403
    assert admin_client.get("/admin/payments/paymentrequest/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/payments/paymentrequest/{payment_request.pk}/delete/").status_code == 403
    )


def test_history_rows_cannot_be_added_changed_or_deleted_in_the_admin(
    admin_client, alice, alices_conversation
):
    event = send(alices_conversation, alice).events.get()
    assert admin_client.get(f"/admin/payments/paymentevent/{event.pk}/change/").status_code == 200
    assert (
        admin_client.post(f"/admin/payments/paymentevent/{event.pk}/change/", {"reason": "paid"}).status_code
        == 403
    )
    assert admin_client.get("/admin/payments/paymentevent/add/").status_code == 403
    assert admin_client.post(f"/admin/payments/paymentevent/{event.pk}/delete/").status_code == 403


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE payments_paymentevent SET to_status = 'paid'",
        "DELETE FROM payments_paymentevent",
    ],
)
def test_history_cannot_be_rewritten_even_in_sql(alice, alices_conversation, sql):
    send(alices_conversation, alice)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert PaymentEvent.objects.get().to_status == "sent"


def test_the_business_profile_is_edited_in_the_admin(admin_client, client):
    BusinessProfile.objects.get_or_create(
        pk=1
    )  # made by a migration (a flush in an earlier test may drop it)
    response = admin_client.post("/admin/payments/businessprofile/1/change/", {"name": "Acme Tickets"})
    assert response.status_code == 302
    assert BusinessProfile.load().name == "Acme Tickets"
    assert admin_client.get("/admin/payments/businessprofile/add/").status_code == 403  # one profile only


def test_a_superuser_refunds_late_money_from_the_admin(admin_client, alice, alices_conversation):
    from payments import actions
    from payments.models import PaymentException
    from tests.payments.conftest import deliver, sandbox_event

    payment_request = send(alices_conversation, alice)
    actions.cancel_payment_request(payment_request.pk, agent=alice)
    deliver(sandbox_event(payment_request))
    exception = PaymentException.objects.get()

    response = admin_client.post(
        "/admin/payments/paymentexception/", {"action": "refund", "_selected_action": [exception.pk]}
    )

    assert response.status_code == 302
    exception.refresh_from_db()
    assert exception.resolution == "refunded"
    assert exception.refund_reference.startswith("re_sbx_")
