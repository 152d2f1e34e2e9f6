"""Payment requests as integrators see them, shared by the REST API and the webhook payloads."""

from __future__ import annotations

from ninja.renderers import JSONRenderer

from desk.actions import display_name
from payments import lifecycle
from payments.models import PaymentEvent, PaymentRequest


def person(user) -> dict | None:
    if user is None:
        return None
    return {"id": user.pk, "username": user.get_username(), "name": display_name(user)}


def payment_request(pr: PaymentRequest) -> dict:
    """The request as `schemas.PaymentRequestOut` (select_related agent and customer to avoid queries)."""
    return {
        "id": pr.pk,
        "object": "payment_request",
        "version": pr.version,
        "status": pr.status,
        "order_number": pr.order_number,
        "amount": str(lifecycle.quantize(pr.amount, pr.currency)),
        "currency": pr.currency,
        "description": pr.description,
        "phone": pr.phone,
        "conversation_id": pr.conversation_id,
        "customer": {"id": pr.customer.pk, "name": pr.customer.name, "phone": pr.customer.phone},
        "agent": person(pr.agent),
        "gateway": pr.gateway,
        "sent_at": pr.sent_at,
        "click_deadline": pr.click_deadline,
        "clicked_at": pr.clicked_at,
        "pay_deadline": pr.pay_deadline,
        "paid_at": pr.paid_at,
        "closed_at": pr.closed_at,
        "expires_at": pr.deadline,
        "failure_reason": pr.failure_reason,
        "last_decline": pr.last_decline,
        "updated_at": pr.updated_at,
    }


def history_entry(event: PaymentEvent) -> dict:
    return {
        "from_status": event.from_status or None,
        "to_status": event.to_status,
        "at": event.at,
        "actor": event.actor_kind,
        "actor_user": person(event.actor_user),
        "reason": event.reason,
        "details": event.details,
    }


def payment_request_detail(pr: PaymentRequest) -> dict:
    """The request with its full history, oldest first (`schemas.PaymentRequestDetail`)."""
    events = PaymentEvent.objects.filter(payment_request=pr).select_related("actor_user").order_by("at", "pk")
    return payment_request(pr) | {"history": [history_entry(event) for event in events]}


_renderer = JSONRenderer()


def render(schema, data: dict) -> str:
    """JSON text of `data` as Django Ninja renders a response of `schema` (webhooks and stored replies)."""
    return _renderer.render(None, schema.model_validate(data).model_dump(by_alias=True), response_status=200)
