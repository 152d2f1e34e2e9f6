"""Live pushes for payment requests: one typed hint per change, sent only after the transaction commits.

The hint goes to every page that can show the request: the conversation's pages (every agent tab and the
supervisor's transcript), the supervisors' desks, and the customer's own /pay/<token>/ page. Consumers re-read
the row and render the same partials the pages use (`card_op`, `pay_page_op`), so a late, duplicate or
reordered hint is harmless: each element carries the request's version and the browser keeps the newest.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

from channels.layers import get_channel_layer
from django.db import transaction
from django.template.loader import render_to_string

from chatdesk import event_loop
from desk import realtime as desk_realtime

from . import lifecycle
from .gateways import get_gateway
from .models import BusinessProfile, PaymentRequest

EVENT_TYPE = "payment.request_changed"
# Several requests changed in one unit of work (the expiry sweep's batch): one hint per page group, not one
# per request, so a page with many cards due at once re-reads them in one database step.
BATCH_EVENT_TYPE = "payment.requests_changed"
SWEEP_SENDS_IN_FLIGHT = 16


def pay_page_group(payment_request_id: int) -> str:
    return f"payments.request.{payment_request_id}"


def _groups_and_event(payment_request: PaymentRequest) -> tuple[list[str], dict]:
    groups = [
        desk_realtime.conversation_group(payment_request.conversation_id),
        desk_realtime.SUPERVISORS_GROUP,
        pay_page_group(payment_request.pk),
    ]
    event = {
        "type": EVENT_TYPE,
        "payment_request_id": payment_request.pk,
        "conversation_id": payment_request.conversation_id,
    }
    return groups, event


def publish_payment_request_changed(payment_request: PaymentRequest) -> None:
    """Tell every page showing this request to re-read it, once the surrounding transaction commits."""
    desk_realtime.publish_on_commit(*_groups_and_event(payment_request))


def _batch_messages(payment_requests: list[PaymentRequest]) -> list[tuple[str, dict]]:
    """(group, event) pairs for a batch: one hint per conversation, one for the supervisors, and the
    customer's own pay page per request (each is a page of its own)."""
    by_conversation: dict[int, list[int]] = defaultdict(list)
    for payment_request in payment_requests:
        by_conversation[payment_request.conversation_id].append(payment_request.pk)
    messages = [
        (
            desk_realtime.conversation_group(conversation_id),
            {"type": BATCH_EVENT_TYPE, "conversation_id": conversation_id, "payment_request_ids": ids},
        )
        for conversation_id, ids in by_conversation.items()
    ]
    messages.append(
        (
            desk_realtime.SUPERVISORS_GROUP,
            {
                "type": BATCH_EVENT_TYPE,
                "conversation_id": None,
                "payment_request_ids": [payment_request.pk for payment_request in payment_requests],
            },
        )
    )
    for payment_request in payment_requests:
        _, event = _groups_and_event(payment_request)
        messages.append((pay_page_group(payment_request.pk), event))
    return messages


def publish_payment_requests_changed(payment_requests: Iterable[PaymentRequest]) -> None:
    """The same for a batch (the expiry sweep): one commit hook, one event-loop hop, and the sends of the
    whole batch in flight together."""
    messages = _batch_messages(list(payment_requests))
    if len(messages) == 1:  # only the supervisors' hint: nothing changed
        return

    def send_all_rollback_unsafe() -> None:
        layer = get_channel_layer()

        async def send() -> None:
            # A few sends in flight at once: each holds a Redis connection of the loop's pool, and opening a
            # thousand of them costs more than the overlap gains.
            in_flight = asyncio.Semaphore(SWEEP_SENDS_IN_FLIGHT)

            async def send_one(group: str, event: dict) -> None:
                async with in_flight:
                    await layer.group_send(group, event)

            await asyncio.gather(*(send_one(group, event) for group, event in messages))

        event_loop.run_from_sync(send)

    transaction.on_commit(send_all_rollback_unsafe, robust=True)


# --- Rendering shared by pages, htmx responses and consumers (sync; consumers use database_sync_to_async) ---


def _card_upsert(payment_request: PaymentRequest, *, user, viewer: str) -> dict:
    html = render_to_string(
        "payments/_card.html#card", {"payment_request": payment_request, "user": user, "viewer": viewer}
    )
    return {"op": "upsert", "html": html}


def card_op(payment_request_id: int, *, user, viewer: str) -> dict | None:
    """An upsert of the payment card as `user` sees it, or None if the request is gone."""
    payment_request = PaymentRequest.objects.filter(pk=payment_request_id).first()
    return payment_request and _card_upsert(payment_request, user=user, viewer=viewer)


def card_ops(conversation_id: int, payment_request_ids: Iterable[int], *, user, viewer: str) -> list[dict]:
    """Upserts of several cards of one conversation, read in one query (a batch push)."""
    payment_requests = PaymentRequest.objects.filter(
        conversation_id=conversation_id, pk__in=payment_request_ids
    )
    return [_card_upsert(pr, user=user, viewer=viewer) for pr in payment_requests.order_by("pk")]


def stale_card_ops(conversation_id: int, known: dict[int, int], *, user, viewer: str) -> list[dict]:
    """Upserts of the conversation's cards that are newer than the versions a page says it shows.

    One query of (id, version) pairs; only a card whose push the page missed (a worker killed between commit
    and push, a Redis restart under an open socket) is rendered and sent again.
    """
    versions = PaymentRequest.objects.filter(conversation_id=conversation_id).values_list("pk", "version")
    stale = [pk for pk, version in versions if version > known.get(pk, 0)]
    return card_ops(conversation_id, stale, user=user, viewer=viewer) if stale else []


def pay_page_op(payment_request_id: int, *, token: str) -> dict:
    """An upsert of the customer's pay page section (status, time left, payment form)."""
    payment_request = PaymentRequest.objects.get(pk=payment_request_id)
    context = pay_page_context(payment_request, token=token)
    return {"op": "upsert", "html": render_to_string("payments/pay.html#payment", context)}


def pay_page_context(payment_request: PaymentRequest | None, *, token: str, **extra) -> dict:
    """What /pay/<token>/ renders, for the page, its htmx responses and its websocket alike."""
    context = {"payment_request": payment_request, "token": token, "profile": BusinessProfile.load(), **extra}
    if payment_request is not None:
        state = payment_request.effective_status()
        context["state"] = state
        if closed_text := lifecycle.CLOSED_PAGE_TEXT.get(state):
            heading, text = closed_text
            context["closed_text"] = (
                heading,
                text.format(order_number=payment_request.order_number, amount=payment_request.display_amount),
            )
        if state == "clicked" and payment_request.gateway_reference:
            gateway = get_gateway(payment_request.gateway)
            context.setdefault("form", gateway.payment_form())
            context["checkout_template"] = gateway.checkout_template
    return context
