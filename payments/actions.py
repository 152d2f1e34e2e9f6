"""The only writers of Chat 2 Pay state.

Every transition locks the request's row (`select_for_update(no_key=True)`), checks `lifecycle` (status table
and the stored deadline, at the moment of the change), writes the history row in the same transaction and
publishes on commit. So two callers at the same instant (cancel vs click, two sweeps, duplicate webhooks)
produce exactly one outcome, and nothing is accepted after a deadline even if the sweep has not run.
Gateway calls and channel transmissions happen outside transactions. Views, consumers, tasks and the admin
all call these functions; lock order is always payment request first, then its conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urljoin

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from api import outbox
from chatdesk.retention import PURGE_BATCH_SIZE, delete_in_batches
from desk.actions import display_name
from desk.models import Conversation, Message

from . import delivery, lifecycle, realtime
from .gateways import get_gateway
from .gateways.base import EventKind, GatewayError, GatewayEvent
from .lifecycle import ActorKind, Reason, Refusal, Status, Transition
from .models import (
    GatewayWebhookEvent,
    PaymentEvent,
    PaymentException,
    PaymentRequest,
    hash_token,
    new_payment_token,
)

Outcome = GatewayWebhookEvent.Outcome
DUPLICATE = "duplicate"  # a webhook event already processed: its task ran again, nothing applied
SWEEP_BATCH_SIZE = 500


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the history records it."""

    kind: ActorKind
    user: object | None = None

    @classmethod
    def agent(cls, user) -> Actor:
        return cls(ActorKind.AGENT, user)


CUSTOMER = Actor(ActorKind.CUSTOMER)
GATEWAY = Actor(ActorKind.GATEWAY)
SYSTEM = Actor(ActorKind.SYSTEM)


@dataclass(frozen=True)
class TransitionResult:
    """The request as it is after the attempt; `refusal` says why nothing changed."""

    payment_request: PaymentRequest
    refusal: Refusal | None = None

    @property
    def ok(self) -> bool:
        return self.refusal is None


@dataclass(frozen=True)
class SendRefused(Exception):
    """A send that may not happen (not the agent's open chat, or a live request for the order).

    Nothing was written."""

    message: str


# --- Building blocks (called inside a transaction, on a row locked by the caller) ---------------------------


def _locked_for_update(payment_request_id: int) -> PaymentRequest:
    # NO KEY UPDATE: concurrent transitions queue here and then re-read the winner's status; rows that only
    # reference this one (history, inbox) can still be inserted meanwhile.
    return PaymentRequest.objects.select_for_update(no_key=True).get(pk=payment_request_id)


def _history_row(
    payment_request: PaymentRequest, *, from_status: str, now, actor: Actor, reason: Reason, details=None
) -> PaymentEvent:
    return PaymentEvent(
        payment_request=payment_request,
        from_status=from_status,
        to_status=payment_request.status,
        at=now,
        actor_kind=actor.kind,
        actor_user=actor.user,
        reason=reason,
        details=details or {},
    )


def _write_event(payment_request: PaymentRequest, **row) -> PaymentEvent:
    event = _history_row(payment_request, **row)
    event.save(force_insert=True)
    outbox.record_payment_event(payment_request, event)  # webhooks: same transaction, delivered after commit
    return event


def _apply(
    payment_request: PaymentRequest,
    transition: Transition,
    *,
    now,
    actor: Actor,
    reason: Reason,
    details: dict | None = None,
    **changes,
) -> None:
    """Write an allowed transition to a locked row plus its history row; publish after commit."""
    old = payment_request.status
    new = lifecycle.TRANSITIONS[transition].target or old
    changes |= {"status": new, "version": payment_request.version + 1, "updated_at": now}
    if new != old and new in lifecycle.CLOSED_STATUSES:
        changes["closed_at"] = now
    for name, value in changes.items():
        setattr(payment_request, name, value)
    payment_request.save(update_fields=list(changes))
    _write_event(payment_request, from_status=old, now=now, actor=actor, reason=reason, details=details)
    realtime.publish_payment_request_changed(payment_request)


def _locked_transition(
    payment_request_id: int, transition: Transition, write: Callable[[PaymentRequest, datetime], None]
) -> TransitionResult:
    """One transition in one transaction: lock the row, let `lifecycle` refuse it at this instant (nothing
    changes), else `write(payment_request, now)` it. Every single-request transition goes through here."""
    with transaction.atomic(durable=True):
        payment_request = _locked_for_update(payment_request_id)
        now = timezone.now()
        if refusal := payment_request.refusal(transition, now):
            return TransitionResult(payment_request, refusal)
        write(payment_request, now)
    return TransitionResult(payment_request)


def _expire(payment_request: PaymentRequest, *, now) -> None:
    was = payment_request.status
    _apply(payment_request, Transition.EXPIRE, now=now, actor=SYSTEM, reason=lifecycle.expiry_reason(was))
    _close_gateway_checkout(payment_request, was=was)


def _expire_batch(batch: list[PaymentRequest], *, now) -> None:
    """Expire the sweep's locked, due rows in one update and one history insert, where `_expire` per row
    takes two statements each: thousands due at the same second expire within it (B4). Publishes nothing:
    the sweep pushes the whole batch at once."""
    expired = lifecycle.TRANSITIONS[Transition.EXPIRE].target
    was = [payment_request.status for payment_request in batch]
    PaymentRequest.objects.filter(pk__in=[payment_request.pk for payment_request in batch]).update(
        status=expired, version=F("version") + 1, updated_at=now, closed_at=now
    )
    for payment_request in batch:
        payment_request.status = expired
        payment_request.version += 1
        payment_request.updated_at = payment_request.closed_at = now
    events = PaymentEvent.objects.bulk_create(
        _history_row(pr, from_status=old, now=now, actor=SYSTEM, reason=lifecycle.expiry_reason(old))
        for pr, old in zip(batch, was, strict=True)
    )
    for payment_request, event, old in zip(batch, events, was, strict=True):
        outbox.record_payment_event(payment_request, event)  # webhooks: same transaction, as _write_event
        _close_gateway_checkout(payment_request, was=old)


def _close_gateway_checkout(payment_request: PaymentRequest, *, was: str) -> None:
    """The gateway must stop taking money too (after commit); if it was paid first, its webhook still makes
    the request paid."""
    if was == Status.CLICKED and payment_request.gateway_reference:
        from .tasks import expire_gateway_checkout_task  # tasks import this module

        expire_gateway_checkout_task.delay_on_commit(payment_request.pk)


# --- Send ---------------------------------------------------------------------------------------------------


def _replayed(agent, idempotency_key: str) -> PaymentRequest | None:
    return PaymentRequest.objects.filter(agent=agent, idempotency_key=idempotency_key).first()


def _live_order_refusal(order_number: str) -> SendRefused:
    live = (
        PaymentRequest.objects.filter(order_number=order_number, status__in=lifecycle.OPEN_STATUSES)
        .select_related("agent")
        .first()
    )
    if live is None:  # it closed in the meantime; the agent can simply send again
        return SendRefused(f"Order {order_number} changed at the same moment; send again.")
    return SendRefused(
        lifecycle.LIVE_ORDER_REFUSAL.format(
            order_number=order_number,
            agent=display_name(live.agent),
            sent_at=timezone.localtime(live.sent_at),
        )
    )


@transaction.atomic
def _create_payment_request(
    conversation_id: int, *, agent, idempotency_key: str, order_number: str, site_url: str, **fields
) -> tuple[PaymentRequest, bool]:
    """The send's one transaction; returns (request, created)."""
    # Lock the conversation: sends in one chat queue here, so a double-submitted form finds the first request.
    conversation = Conversation.objects.select_for_update(no_key=True).get(pk=conversation_id)
    if conversation.status != Conversation.Status.OPEN or conversation.assigned_agent_id != agent.pk:
        raise SendRefused(lifecycle.CONVERSATION_NOT_OPEN_REFUSAL)
    if replayed := _replayed(agent, idempotency_key):
        return replayed, False
    if PaymentRequest.objects.filter(order_number=order_number, status__in=lifecycle.OPEN_STATUSES).exists():
        raise _live_order_refusal(order_number)
    now = timezone.now()
    token = new_payment_token()
    amount = lifecycle.quantize(fields.pop("amount"), fields["currency"])
    amount_text = lifecycle.format_amount(amount, fields["currency"])
    url = urljoin(site_url, reverse("payments:pay", args=[token]))
    body = lifecycle.LINK_MESSAGE.format(
        order_number=order_number,
        amount=amount_text,
        url=url,
        window=lifecycle.describe_window(settings.CHAT2PAY_CLICK_WINDOW_SECONDS),
    )
    message = delivery.record_for_customer(
        conversation.pk,
        body,
        kind=Message.Kind.PAYMENT,
        author=agent,
        purpose=delivery.PAYMENT_REQUEST,
        template_variables=[order_number, amount_text, url],  # WhatsApp's template, outside the 24 h window
    )
    payment_request = PaymentRequest.objects.create(
        conversation=conversation,
        customer_id=conversation.customer_id,
        agent=agent,
        message=message,
        amount=amount,
        order_number=order_number,
        token_hash=hash_token(token),
        idempotency_key=idempotency_key,
        sent_at=now,
        click_deadline=lifecycle.click_deadline(now),
        gateway=settings.CHAT2PAY_GATEWAY,
        **fields,
    )
    _write_event(payment_request, from_status="", now=now, actor=Actor.agent(agent), reason=Reason.SENT)
    realtime.publish_payment_request_changed(payment_request)
    return payment_request, True


def send_payment_request(
    conversation_id: int,
    *,
    agent,
    phone: str,
    amount: Decimal,
    currency: str,
    order_number: str,
    description: str,
    idempotency_key: str,
    site_url: str,
) -> PaymentRequest:
    """Send a request validated by `forms.PaymentRequestForm`: its card and link message go into the chat
    and the link is transmitted over the conversation's channel (`failed` if the channel refuses it).

    Replaying an idempotency key returns the first request. Raises SendRefused when the chat is not the
    agent's own open one, or when the order number already has a live request (named in the message).
    """
    if replayed := _replayed(agent, idempotency_key):
        return replayed
    # An overdue request the sweep has not reached yet must not block a new link for its order.
    for overdue_id in PaymentRequest.objects.filter(
        order_number=order_number, status__in=lifecycle.OPEN_STATUSES
    ).values_list("pk", flat=True):
        expire_payment_request(overdue_id)
    try:
        payment_request, created = _create_payment_request(
            conversation_id,
            agent=agent,
            idempotency_key=idempotency_key,
            order_number=order_number,
            site_url=site_url,
            phone=phone,
            amount=amount,
            currency=currency,
            description=description,
        )
    except IntegrityError:
        # A concurrent send won on a unique constraint: the same form (idempotency) or the same order.
        if replayed := _replayed(agent, idempotency_key):
            return replayed
        raise _live_order_refusal(order_number) from None
    if created:
        try:
            delivery.transmit(payment_request.message)
        except delivery.DeliveryFailed as failure:
            return mark_failed(payment_request.pk, reason=str(failure)).payment_request
    return payment_request


# --- Transitions --------------------------------------------------------------------------------------------


def register_click(payment_request_id: int) -> TransitionResult:
    """The customer's browser opened the link (the page's own POST, never a GET): start the pay window."""

    def click(payment_request: PaymentRequest, now: datetime) -> None:
        _apply(
            payment_request,
            Transition.CLICK,
            now=now,
            actor=CUSTOMER,
            reason=Reason.CLICKED,
            clicked_at=now,
            pay_deadline=lifecycle.pay_deadline(now),
        )

    return _locked_transition(payment_request_id, Transition.CLICK, click)


def open_checkout(payment_request: PaymentRequest) -> PaymentRequest:
    """Give a clicked request its gateway checkout, once. The gateway call runs outside any transaction and
    is idempotent per request, so a refreshed page or a retried click reuses the same checkout.

    Raises GatewayError when the gateway could not open it: nothing is attached, the request stays clicked,
    and a click again tries again. After a refusal (kept by the gateway under its idempotency key) the
    request's `checkout_refusals` moves on, so that the next try is a new request rather than a replay.
    """
    if payment_request.effective_status() != Status.CLICKED or payment_request.gateway_reference:
        return payment_request
    try:
        checkout = get_gateway(payment_request.gateway).create_checkout(payment_request)
    except GatewayError as error:
        if error.refused:
            # Conditional on the count the key was made from: two clicks refused at once move it on once.
            PaymentRequest.objects.filter(
                pk=payment_request.pk,
                gateway_reference="",
                checkout_refusals=payment_request.checkout_refusals,
            ).update(checkout_refusals=F("checkout_refusals") + 1, updated_at=timezone.now())
        raise
    with transaction.atomic(durable=True):
        attached = PaymentRequest.objects.filter(pk=payment_request.pk, gateway_reference="").update(
            gateway_reference=checkout.reference, version=F("version") + 1, updated_at=timezone.now()
        )
        payment_request = PaymentRequest.objects.get(pk=payment_request.pk)
        if attached:
            realtime.publish_payment_request_changed(payment_request)  # the pay page now shows the form
    return payment_request


def record_payment_attempt(payment_request_id: int, *, payment_method: dict) -> TransitionResult:
    """The customer submitted the gateway's form: allowed only while clicked and before the pay deadline.

    Its time is what makes a payment confirmed after the deadline still `paid`.
    """

    def start_payment(payment_request: PaymentRequest, now: datetime) -> None:
        _apply(
            payment_request,
            Transition.START_PAYMENT,
            now=now,
            actor=CUSTOMER,
            reason=Reason.PAYMENT_STARTED,
            details={"payment_method": payment_method},
            payment_started_at=now,
            payment_attempts=payment_request.payment_attempts + 1,
            last_decline="",
        )

    return _locked_transition(payment_request_id, Transition.START_PAYMENT, start_payment)


def cancel_payment_request(payment_request_id: int, *, agent) -> TransitionResult:
    """The agent cancels a link the customer has not opened; the customer gets the exact cancel notice.

    Refused (nothing changes) once clicked or paid, when already canceled, and at or after the deadline.
    """

    def cancel(payment_request: PaymentRequest, now: datetime) -> None:
        _apply(payment_request, Transition.CANCEL, now=now, actor=Actor.agent(agent), reason=Reason.CANCELED)
        delivery.notify_customer(
            payment_request.conversation_id,
            lifecycle.CANCEL_NOTICE.format(order_number=payment_request.order_number),
            author=agent,
            purpose=delivery.CANCEL_NOTICE,
            template_variables=[payment_request.order_number],
        )

    return _locked_transition(payment_request_id, Transition.CANCEL, cancel)


def expire_payment_request(payment_request_id: int) -> TransitionResult:
    """Expire one request whose window has run out (refused before its deadline)."""
    return _locked_transition(
        payment_request_id, Transition.EXPIRE, lambda payment_request, now: _expire(payment_request, now=now)
    )


def expire_due_payment_requests(*, batch_size: int = SWEEP_BATCH_SIZE) -> int:
    """Expire every request past its deadline, in batches; returns how many. Safe to run concurrently.

    Each batch locks its rows with SKIP LOCKED, so parallel sweeps share the work and never expire a row
    twice; a row busy in another transition is skipped and picked up by the next sweep.
    """
    expired = 0
    while True:
        with transaction.atomic(durable=True):
            now = timezone.now()
            due = PaymentRequest.objects.select_for_update(no_key=True, skip_locked=True)
            batch = list(
                due.filter(status=Status.SENT, click_deadline__lte=now).order_by("click_deadline")[
                    :batch_size
                ]
            )
            batch += due.filter(status=Status.CLICKED, pay_deadline__lte=now).order_by("pay_deadline")[
                : batch_size - len(batch)
            ]
            if batch:
                with outbox.batch(batch):  # webhooks: the subscribed endpoints read once per batch
                    _expire_batch(batch, now=now)
                realtime.publish_payment_requests_changed(batch)
        expired += len(batch)
        if len(batch) < batch_size:
            return expired


def mark_failed(payment_request_id: int, *, reason: str) -> TransitionResult:
    """The channel refused the link outright: the request is `failed` and takes no clicks or money."""

    def fail(payment_request: PaymentRequest, now: datetime) -> None:
        _apply(
            payment_request,
            Transition.FAIL,
            now=now,
            actor=SYSTEM,
            reason=Reason.DELIVERY_FAILED,
            details={"error": reason},
            failure_reason=reason[:200],
        )

    return _locked_transition(payment_request_id, Transition.FAIL, fail)


# --- Gateway results ----------------------------------------------------------------------------------------


def record_received_gateway_event(inbox: GatewayWebhookEvent, event: GatewayEvent) -> str:
    """Apply an event a webhook view already stored in the inbox (as RECEIVED) exactly once.

    The view verified and stored the event and answered (`payments.inbox`); its task read the event's truth
    (from the stored body, or for Stripe from the gateway) and this applies it. A repeated task finds the
    inbox row no longer RECEIVED and changes nothing (DUPLICATE). Events are forward-only: a decline
    arriving after the payment is ignored, never a downgrade.
    """
    reference = event.client_reference
    with transaction.atomic(durable=True):
        # Lock order: the payment request first (as every transition does), then the inbox row.
        payment_request = (
            PaymentRequest.objects.select_for_update(no_key=True)
            .filter(pk=int(reference), gateway=inbox.gateway)
            .first()
            if reference.isdigit() and len(reference) < 19
            else None
        )
        inbox = GatewayWebhookEvent.objects.select_for_update(no_key=True).get(pk=inbox.pk)
        if inbox.outcome != Outcome.RECEIVED:
            return DUPLICATE
        if payment_request is None:
            outcome = Outcome.UNMATCHED
        else:
            outcome = _apply_gateway_event(payment_request, event, inbox=inbox, now=timezone.now())
        inbox.outcome = outcome
        inbox.payment_request = payment_request
        inbox.save(update_fields=["outcome", "payment_request"])
    return outcome


def purge_processed_webhook_events(*, now=None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete inbox rows that were applied or ignored more than WEBHOOK_INBOX_RETENTION_DAYS ago, in
    batches; returns how many. Rows not processed yet, flagged unmatched, or behind a payment exception (the
    record of money) are never purged."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_INBOX_RETENTION_DAYS)
    purgeable = GatewayWebhookEvent.objects.filter(
        outcome__in=[Outcome.APPLIED, Outcome.IGNORED], received_at__lt=cutoff, exception__isnull=True
    )
    return delete_in_batches(purgeable, batch_size=batch_size)


def _money_already_recorded(payment_request: PaymentRequest, payment_reference: str) -> bool:
    """The same payment reported again (another event, the reconciler, the expire call's answer): one payment
    is counted once, as the payment or as its exception, whatever reported it."""
    return bool(payment_reference) and (
        payment_request.events.filter(reason=Reason.PAID, details__payment=payment_reference).exists()
        or payment_request.exceptions.filter(gateway_reference=payment_reference).exists()
    )


def _apply_gateway_event(
    payment_request: PaymentRequest, event: GatewayEvent, *, inbox: GatewayWebhookEvent, now
) -> str:
    """One verified event's effect on a locked request (paid, exception, decline or nothing)."""
    if event.kind == EventKind.PAYMENT_SUCCEEDED:
        if _money_already_recorded(payment_request, event.payment_reference):
            return Outcome.IGNORED
        return mark_paid(payment_request, event, inbox=inbox, now=now)
    if event.kind == EventKind.PAYMENT_FAILED:
        return record_payment_declined(payment_request, event, now=now)
    return Outcome.IGNORED


def mark_paid(
    payment_request: PaymentRequest, event: GatewayEvent, *, inbox: GatewayWebhookEvent, now
) -> str:
    """The gateway confirmed money (call only from `record_received_gateway_event`, which holds the row lock).

    Paid if the customer opened the link and started paying before the pay deadline, even if the request
    expired meanwhile. Money that cannot be a payment (closed request, wrong amount, second payment) is
    recorded as a PaymentException for supervisors: never dropped, never silently paid.
    """
    if event.amount != payment_request.amount or event.currency != payment_request.currency:
        return _record_exception(
            payment_request, event, inbox=inbox, now=now, kind=PaymentException.Kind.AMOUNT_MISMATCH
        )
    if payment_request.status == Status.PAID:
        return _record_exception(
            payment_request, event, inbox=inbox, now=now, kind=PaymentException.Kind.DUPLICATE
        )
    in_time = event.started_at is not None and lifecycle.payment_started_in_time(
        clicked_at=payment_request.clicked_at,
        pay_deadline=payment_request.pay_deadline,
        started_at=event.started_at,
    )
    if payment_request.refusal(Transition.PAY, now) is not None or not in_time:
        return _record_exception(
            payment_request, event, inbox=inbox, now=now, kind=PaymentException.Kind.LATE
        )
    _apply(
        payment_request,
        Transition.PAY,
        now=now,
        actor=GATEWAY,
        reason=Reason.PAID,
        details={
            "payment": event.payment_reference,
            "started_at": event.started_at.isoformat(),
            "card": dict(event.card),
        },
        paid_at=now,
    )
    delivery.notify_customer(
        payment_request.conversation_id,
        lifecycle.PAYMENT_CONFIRMATION.format(
            order_number=payment_request.order_number, amount=payment_request.display_amount
        ),
    )
    return Outcome.APPLIED


_EXCEPTION_REASONS = {
    PaymentException.Kind.LATE: Reason.LATE_PAYMENT,
    PaymentException.Kind.AMOUNT_MISMATCH: Reason.AMOUNT_MISMATCH,
    PaymentException.Kind.DUPLICATE: Reason.DUPLICATE_PAYMENT,
}


def _record_exception(
    payment_request: PaymentRequest, event: GatewayEvent, *, inbox: GatewayWebhookEvent, now, kind: str
) -> str:
    PaymentException.objects.create(
        payment_request=payment_request,
        kind=kind,
        amount=event.amount,
        currency=event.currency,
        gateway=payment_request.gateway,
        gateway_reference=event.payment_reference,
        webhook_event=inbox,
    )
    # The status stays; the history and the card say that money arrived and needs a decision.
    payment_request.version += 1
    payment_request.save(update_fields=["version", "updated_at"])
    _write_event(
        payment_request,
        from_status=payment_request.status,
        now=now,
        actor=GATEWAY,
        reason=_EXCEPTION_REASONS[kind],
        details={"payment": event.payment_reference, "amount": str(event.amount), "currency": event.currency},
    )
    realtime.publish_payment_request_changed(payment_request)
    return Outcome.EXCEPTION


def record_payment_declined(payment_request: PaymentRequest, event: GatewayEvent, *, now) -> str:
    """The gateway declined an attempt (call only from `record_received_gateway_event`): the customer may
    retry within the window, and the agent's card shows why."""
    if payment_request.refusal(Transition.DECLINE, now) is not None:
        return Outcome.IGNORED
    _apply(
        payment_request,
        Transition.DECLINE,
        now=now,
        actor=GATEWAY,
        reason=Reason.PAYMENT_DECLINED,
        details={"message": event.failure_message, "card": dict(event.card)},
        last_decline=event.failure_message[:200],
    )
    return Outcome.APPLIED


def refund_payment_exception(exception_id: int, *, by) -> PaymentException:
    """Return money that did not become a payment (C3 #30). Raises GatewayError, leaving it open.

    The gateway call runs outside any transaction with a key naming the exception and the attempt, so a
    double-click or a retry after a timeout repeats the key and refunds once. The attempt moves on only when
    the gateway refused (it would replay that refusal for the same key): the next try is a new request.
    """
    exception = PaymentException.objects.select_related("payment_request").get(pk=exception_id)
    if exception.resolution != PaymentException.Resolution.OPEN:
        return exception
    # The first attempt keeps the key refunds always had, so one that timed out before an upgrade still
    # finds its refund; later attempts name their number.
    key = f"payment-exception-{exception.pk}"
    if exception.refund_refusals:
        key += f"-attempt-{exception.refund_refusals + 1}"
    try:
        refund_reference = get_gateway(exception.gateway).refund(
            exception.gateway_reference, exception.amount, exception.currency, idempotency_key=key
        )
    except GatewayError as error:
        changes: dict = {"last_refund_error": str(error)[:300]}
        if error.refused:
            changes["refund_refusals"] = F("refund_refusals") + 1
        # Conditional on the attempt: two clicks refused at once move it on once, never past a refund.
        PaymentException.objects.filter(
            pk=exception.pk,
            resolution=PaymentException.Resolution.OPEN,
            refund_refusals=exception.refund_refusals,
        ).update(**changes)
        raise
    with transaction.atomic(durable=True):
        payment_request = _locked_for_update(exception.payment_request_id)
        now = timezone.now()
        resolved = PaymentException.objects.filter(
            pk=exception.pk, resolution=PaymentException.Resolution.OPEN
        ).update(
            resolution=PaymentException.Resolution.REFUNDED,
            refund_reference=refund_reference,
            resolved_at=now,
            resolved_by=by,
        )
        if resolved:
            _write_event(
                payment_request,
                from_status=payment_request.status,
                now=now,
                actor=Actor(ActorKind.STAFF, by),
                reason=Reason.REFUNDED,
                details={"exception": exception.pk, "refund": refund_reference},
            )
    exception.refresh_from_db()
    return exception
