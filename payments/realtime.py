"""Live pushes for payment requests: one typed hint per unit of work, sent only after the transaction commits.

The hint goes to every page that can show the request: the conversation's pages (every agent tab and the
supervisor's transcript), the supervisors' desks, and the customer's own /pay/<token>/ page. The
conversation's pages get the card itself, rendered once by the process that made the change (`card_hint`):
the websocket process forwards it, where it would otherwise re-read and render it once per open page on the
one thread all its sockets share. The cards of all the conversations a unit of work changed travel in one
message, which each web process hands out to its sockets (`desk.card_fanout`). The other pages re-read what
they show (`pay_page_op`; the supervisors' htmx lists). A late, duplicate or reordered hint is harmless: each
element carries the request's version and the browser keeps the newest, and a ping re-sends any card newer
than the page shows (`stale_card_ops`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import prefetch_related_objects
from django.template.loader import render_to_string

from chatdesk import event_loop
from chatdesk.channel_groups import groups_with_members
from desk import realtime as desk_realtime

from . import lifecycle
from .gateways import get_gateway
from .models import BusinessProfile, PaymentRequest

# The customer's pay page: one request's hint (it re-reads the request).
EVENT_TYPE = "payment.request_changed"
# The supervisors' desks: the requests one unit of work changed (one, or the expiry sweep's batch).
BATCH_EVENT_TYPE = "payment.requests_changed"
# Every web process (desk.realtime.CARDS_GROUP): the changed cards, by the conversation that shows them.
CARDS_EVENT_TYPE = "payment.cards_changed"
SENDS_IN_FLIGHT = 16


def pay_page_group(payment_request_id: int) -> str:
    return f"payments.request.{payment_request_id}"


def publish_payment_request_changed(payment_request: PaymentRequest) -> None:
    """Tell every page showing this request that it changed, once the surrounding transaction commits."""
    _publish_on_commit([payment_request])


def publish_payment_requests_changed(payment_requests: Iterable[PaymentRequest]) -> None:
    """The same for a batch (the expiry sweep): one commit hook, one event-loop hop, and the sends of the
    whole batch in flight together."""
    _publish_on_commit(list(payment_requests))


def _publish_on_commit(payment_requests: list[PaymentRequest]) -> None:
    if not payment_requests:
        return

    def send_all_rollback_unsafe() -> None:
        cards = _cards_by_conversation(payment_requests)  # rendered after the commit: they show what it wrote
        messages = _messages(payment_requests)
        layer = get_channel_layer()

        async def send() -> None:
            # A few sends in flight at once: each holds a Redis connection of the loop's pool, and opening a
            # thousand of them costs more than the overlap gains.
            in_flight = asyncio.Semaphore(SENDS_IN_FLIGHT)
            pages = {
                conversation_id: desk_realtime.conversation_group(conversation_id)
                for conversation_id, _ in cards
            }
            listening = await groups_with_members(
                layer, [group for group, _ in messages] + list(pages.values())
            )
            shown = [
                [conversation_id, hints]
                for conversation_id, hints in cards
                if pages[conversation_id] in listening
            ]
            sends = [(group, event) for group, event in messages if group in listening]
            if shown:
                sends.append((desk_realtime.CARDS_GROUP, {"type": CARDS_EVENT_TYPE, "conversations": shown}))

            async def send_one(group: str, event: dict) -> None:
                async with in_flight:
                    await layer.group_send(group, event)

            await asyncio.gather(*(send_one(group, event) for group, event in sends))

        event_loop.run_from_sync(send)

    transaction.on_commit(send_all_rollback_unsafe, robust=True)


def _cards_by_conversation(payment_requests: list[PaymentRequest]) -> list[tuple[int, list[dict]]]:
    """Each conversation's changed cards, as its desk pages show them."""
    _read_money_waiting_notes(payment_requests)
    by_conversation: dict[int, list[dict]] = defaultdict(list)
    for payment_request in payment_requests:
        by_conversation[payment_request.conversation_id].append(card_hint(payment_request))
    return list(by_conversation.items())


def _messages(payment_requests: list[PaymentRequest]) -> list[tuple[str, dict]]:
    """(group, event) pairs besides the cards: the supervisors get the ids, each customer's pay page its own
    request's id."""
    supervisors = {"type": BATCH_EVENT_TYPE, "payment_request_ids": [pr.pk for pr in payment_requests]}
    return [(desk_realtime.SUPERVISORS_GROUP, supervisors)] + [
        (pay_page_group(pr.pk), {"type": EVENT_TYPE, "payment_request_id": pr.pk}) for pr in payment_requests
    ]


# --- Rendering shared by pages, htmx responses and consumers (sync; consumers use database_sync_to_async) ---


def _read_money_waiting_notes(payment_requests: list[PaymentRequest]) -> None:
    """A closed card says whether money is waiting on it (`exceptions`): read them for all the cards about to
    be rendered in one query, where each card would otherwise make its own (`_card.html`)."""
    closed = [pr for pr in payment_requests if pr.effective_status() in lifecycle.CLOSED_STATUSES]
    prefetch_related_objects(closed, "exceptions")


def _card_html(payment_request: PaymentRequest, *, user, viewer: str) -> str:
    return render_to_string(
        "payments/_card.html#card", {"payment_request": payment_request, "user": user, "viewer": viewer}
    )


def _card_upsert(payment_request: PaymentRequest, *, user, viewer: str) -> dict:
    return {"op": "upsert", "html": _card_html(payment_request, user=user, viewer=viewer)}


def card_hint(payment_request: PaymentRequest) -> dict:
    """The card as the desk pages show it, for the hint: its request's `id`, `html` for every viewer, and
    `owner_html` for the agent who sent it while they may still cancel it (the "Cancel payment" button is all
    that depends on who looks; the card reads nothing of the viewer but their id)."""
    hint = {"id": payment_request.pk, "html": _card_html(payment_request, user=None, viewer="agent")}
    if not payment_request.can_be_canceled:
        return hint | {"owner_id": None, "owner_html": None}
    owner = get_user_model()(pk=payment_request.agent_id)
    owner_html = _card_html(payment_request, user=owner, viewer="agent")
    return hint | {"owner_id": payment_request.agent_id, "owner_html": owner_html}


def card_for_viewer(hint: dict, *, user) -> dict:
    """The upsert a desk page of `user` gets from a card hint."""
    is_owner = hint["owner_id"] is not None and hint["owner_id"] == user.pk
    return {"op": "upsert", "html": hint["owner_html"] if is_owner else hint["html"]}


def card_ops(conversation_id: int, payment_request_ids: Iterable[int], *, user, viewer: str) -> list[dict]:
    """Upserts of several cards of one conversation, read in one query, and their money-waiting notes in one
    more if any is closed (a ping's resend)."""
    cards = PaymentRequest.objects.filter(conversation_id=conversation_id, pk__in=payment_request_ids)
    payment_requests = list(cards.order_by("pk"))
    _read_money_waiting_notes(payment_requests)
    return [_card_upsert(pr, user=user, viewer=viewer) for pr in payment_requests]


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
