"""Stripe's HTTP surface: the signed webhook at /webhooks/stripe/ and the page customers come back to."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import inbox
from .gateways import stripe as stripe_gateway
from .gateways.base import InvalidWebhook
from .views import customer_page

logger = logging.getLogger(__name__)


@csrf_exempt  # Stripe cannot send our CSRF token; its signature authenticates it instead
@require_POST
def webhook(request: HttpRequest) -> HttpResponse:
    """Verify the signature over the raw body (400 and no change if bad), store the event, answer at once.

    Processing happens in a task (`payments.inbox`, `payments.stripe_inbox`), so a slow Stripe or database
    never makes Stripe time out and retry; a duplicate delivery is answered 200 and changes nothing.
    """
    try:
        event = stripe_gateway.verify(request.body, request.headers.get(stripe_gateway.SIGNATURE_HEADER))
    except InvalidWebhook as error:
        logger.warning("Rejected stripe webhook: %s", error)
        return HttpResponseBadRequest("invalid webhook")
    stored = inbox.store_event("stripe", event_id=event["id"], event_type=event["type"], payload=event)
    return JsonResponse({"received": True, "duplicate": stored is None})


@customer_page
@require_GET
def checkout_return(request: HttpRequest) -> HttpResponse:
    """Where Stripe's hosted page sends the customer back. It changes nothing: the webhook decides."""
    return render(request, "payments/stripe_return.html", {"paid": bool(request.GET.get("session_id"))})
