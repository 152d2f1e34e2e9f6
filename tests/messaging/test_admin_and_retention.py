"""The outbox and both webhook inboxes in the admin (view, search and filter; never edit or delete), and the
beat task that forgets processed webhook events after WEBHOOK_INBOX_RETENTION_DAYS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from desk.messaging import tasks as messaging_tasks
from desk.messaging.models import InboundWebhookEvent, OutboundDelivery
from payments import tasks as payment_tasks
from payments.lifecycle import Status
from payments.models import GatewayWebhookEvent, PaymentException
from tests.factories import MessageFactory, UserFactory
from tests.payments.conftest import make_request

pytestmark = pytest.mark.django_db
Outcome = GatewayWebhookEvent.Outcome


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def delivery() -> OutboundDelivery:
    return OutboundDelivery.objects.create(
        message=MessageFactory(direction="outbound"),
        channel="sms",
        provider="clickatell",
        to="+27829876543",
        state=OutboundDelivery.State.ACCEPTED,
        provider_message_id="ck-4242",
        next_attempt_at=timezone.now(),
    )


def inbox_event(event_id: str, outcome: str, *, days_old: int = 0, **fields) -> GatewayWebhookEvent:
    event = GatewayWebhookEvent.objects.create(
        gateway="stripe",
        event_id=event_id,
        event_type="checkout.session.completed",
        outcome=outcome,
        payload={},
        **fields,
    )
    # received_at is set on insert; age the row as if it had arrived `days_old` days ago
    GatewayWebhookEvent.objects.filter(pk=event.pk).update(
        received_at=timezone.now() - timedelta(days=days_old)
    )
    return event


def inbound_event(event_id: str, *, days_old: int = 0) -> InboundWebhookEvent:
    event = InboundWebhookEvent.objects.create(provider="whatsapp", event_id=event_id, kind="message")
    InboundWebhookEvent.objects.filter(pk=event.pk).update(
        received_at=timezone.now() - timedelta(days=days_old)
    )
    return event


class TestAdmin:
    @pytest.mark.parametrize(
        ("url", "search", "filters"),
        [
            ("/admin/desk/outbounddelivery/", "ck-4242", "state__exact=accepted&channel__exact=sms"),
            ("/admin/desk/inboundwebhookevent/", "wamid.HBg", "provider__exact=whatsapp&kind__exact=message"),
            ("/admin/payments/gatewaywebhookevent/", "evt_flagged", "outcome__exact=unmatched"),
        ],
    )
    def test_the_history_is_listed_searched_and_filtered(self, admin_client, delivery, url, search, filters):
        inbound_event("wamid.HBgLMjc4Mj")
        inbox_event("evt_flagged", Outcome.UNMATCHED, attempts=6)
        inbox_event("evt_applied", Outcome.APPLIED)
        assert admin_client.get(url).status_code == 200
        found = admin_client.get(f"{url}?q={search}&{filters}")
        assert found.status_code == 200
        assert search in found.content.decode()
        assert "evt_applied" not in found.content.decode()

    @pytest.mark.parametrize(
        "model", ["desk/outbounddelivery", "desk/inboundwebhookevent", "payments/gatewaywebhookevent"]
    )
    def test_admins_cannot_add_edit_or_delete_the_history(self, admin_client, delivery, model):
        rows = {
            "desk/outbounddelivery": delivery,
            "desk/inboundwebhookevent": inbound_event("wamid.1"),
            "payments/gatewaywebhookevent": inbox_event("evt_1", Outcome.APPLIED),
        }
        row = rows[model]
        page = admin_client.get(f"/admin/{model}/{row.pk}/change/")
        assert page.status_code == 200  # viewing is allowed
        assert 'name="_save"' not in page.content.decode()
        assert admin_client.post(f"/admin/{model}/{row.pk}/change/", {"state": "pending"}).status_code == 403
        assert admin_client.get(f"/admin/{model}/add/").status_code == 403
        assert admin_client.post(f"/admin/{model}/{row.pk}/delete/", {"post": "yes"}).status_code == 403
        bulk = admin_client.post(
            f"/admin/{model}/", {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
        )
        assert bulk.status_code in {200, 302}  # no such action: the list again, nothing deleted
        assert type(row).objects.filter(pk=row.pk).exists()
        delivery.refresh_from_db()
        assert delivery.state == OutboundDelivery.State.ACCEPTED


class TestRetention:
    def test_processed_events_older_than_the_retention_are_purged(self, settings):
        settings.WEBHOOK_INBOX_RETENTION_DAYS = 30
        payment_request = make_request(Status.EXPIRED, gateway="stripe")
        old_applied = inbox_event("evt_old_applied", Outcome.APPLIED, days_old=31)
        old_ignored = inbox_event("evt_old_ignored", Outcome.IGNORED, days_old=31)
        kept = [
            inbox_event("evt_recent", Outcome.APPLIED, days_old=29),
            inbox_event("evt_old_received", Outcome.RECEIVED, days_old=31),  # never processed
            inbox_event("evt_old_unmatched", Outcome.UNMATCHED, days_old=31),  # flagged for a person
            inbox_event("evt_old_exception", Outcome.EXCEPTION, days_old=31, payment_request=payment_request),
        ]
        PaymentException.objects.create(
            payment_request=payment_request,
            kind=PaymentException.Kind.LATE,
            amount=payment_request.amount,
            currency=payment_request.currency,
            gateway="stripe",
            gateway_reference="pi_1",
            webhook_event=kept[-1],
        )

        assert payment_tasks.purge_processed_webhook_events_task.apply().get() == 2

        remaining = set(GatewayWebhookEvent.objects.values_list("pk", flat=True))
        assert remaining == {event.pk for event in kept}
        assert not remaining & {old_applied.pk, old_ignored.pk}
        assert payment_tasks.purge_processed_webhook_events_task.apply().get() == 0  # a second run: no-op

    def test_inbound_provider_events_older_than_the_retention_are_purged(self, settings):
        settings.WEBHOOK_INBOX_RETENTION_DAYS = 10
        inbound_event("wamid.old", days_old=11)
        inbound_event("wamid.recent", days_old=9)

        assert messaging_tasks.purge_processed_inbound_events_task.apply().get() == 1

        assert list(InboundWebhookEvent.objects.values_list("event_id", flat=True)) == ["wamid.recent"]

    def test_the_purges_run_on_beat(self, settings):
        tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
        assert "payments.tasks.purge_processed_webhook_events_task" in tasks
        assert "desk.messaging.tasks.purge_processed_inbound_events_task" in tasks
