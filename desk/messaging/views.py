"""The providers' webhooks: /webhooks/whatsapp/ and /webhooks/clickatell/. CSRF-exempt (providers cannot send
our token; the signature or shared secret authenticates them), verified before the body is read as data, 400
and nothing changed when verification or parsing fails; a replayed event is answered 200 and changes
nothing."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from . import inbound, whatsapp
from .base import InvalidWebhook
from .outbox import ADAPTERS

logger = logging.getLogger(__name__)


def _receive(request: HttpRequest, provider: str) -> HttpResponse:
    try:
        batch = ADAPTERS[provider].parse_webhook(request.body, request.headers, request.GET)
    except InvalidWebhook as error:
        logger.warning("Rejected %s webhook: %s", provider, error)
        return HttpResponseBadRequest("invalid webhook")
    outcomes = inbound.apply(provider, batch)
    return JsonResponse({"received": True, "outcomes": outcomes})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def whatsapp_webhook(request: HttpRequest) -> HttpResponse:
    """GET: Meta's subscription handshake (echo `hub.challenge` if the verify token matches). POST: events."""
    if request.method == "GET":
        challenge = whatsapp.verify_subscription(request.GET)
        if challenge is None:
            return HttpResponseForbidden("verification failed")
        return HttpResponse(challenge, content_type="text/plain")
    return _receive(request, "whatsapp")


@csrf_exempt
@require_POST
def clickatell_webhook(request: HttpRequest) -> HttpResponse:
    return _receive(request, "clickatell")
