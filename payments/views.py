"""Chat 2 Pay's HTTP surface, thin: fetch with permission, call one action, render a partial.

Agent desk (htmx): the Extensions dialog, the Chat 2 Pay form, cancel. Customer: /pay/<token>/ and its own
POSTs (the click, the payment). Gateway: the signed webhook.
"""

from __future__ import annotations

import logging
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from chatdesk import throttling
from desk.access import agent_required

from . import access, actions, inbox, lifecycle
from .forms import PaymentRequestForm
from .gateways import get_gateway
from .gateways.base import GatewayError, InvalidWebhook, PaymentOutcome
from .realtime import pay_page_context

logger = logging.getLogger(__name__)


def site_url(request: HttpRequest) -> str:
    """Where customers and gateways reach this desk: CHAT2PAY_PUBLIC_BASE_URL, else this request's host."""
    return settings.CHAT2PAY_PUBLIC_BASE_URL or request.build_absolute_uri("/")


# --- Agent desk ---------------------------------------------------------------------------------------------


@agent_required
@require_GET
def extensions(request: HttpRequest, pk: int) -> HttpResponse:
    """The extension cards (a dialog); today there is one, Chat 2 Pay."""
    conversation = access.get_conversation_for_sending(request.user, pk)
    return render(request, "payments/_extensions.html", {"conversation": conversation})


@agent_required
@require_http_methods(["GET", "POST"])
def send(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the Chat 2 Pay form (a dialog). POST: send it; inline errors come back with 422."""
    conversation = access.get_conversation_for_sending(request.user, pk)
    if request.method == "GET":
        form = PaymentRequestForm.for_conversation(conversation)
        return render(request, "payments/_send_form.html", {"conversation": conversation, "form": form})
    form = PaymentRequestForm(request.POST)
    if form.is_valid():
        try:
            payment_request = actions.send_payment_request(
                conversation.pk, agent=request.user, site_url=site_url(request), **form.cleaned_data
            )
        except actions.SendRefused as refusal:
            form.add_error(None, refusal.message)
    if not form.is_valid():
        context = {"conversation": conversation, "form": form}
        return render(request, "payments/_send_form.html#form", context, status=422)
    context = {
        "conversation": conversation,
        "message": payment_request.message,
        "toast": lifecycle.SENT_TOAST.format(order_number=payment_request.order_number),
    }
    # Replace the dialog (closing it) with the new card, which realtime.js files into the transcript.
    return retarget(reswap(render(request, "payments/_sent.html", context), "innerHTML"), "#modal-slot")


@agent_required
@require_POST
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel from the card; the toast says what happened, and a refusal changes nothing (409)."""
    payment_request = access.get_payment_request_for_agent(request.user, pk)
    result = actions.cancel_payment_request(payment_request.pk, agent=request.user)
    if result.ok:
        toast, level = lifecycle.CANCELED_TOAST.format(order_number=payment_request.order_number), "success"
    else:
        toast, level = result.refusal.label, "error"
    context = {"payment_request": result.payment_request, "viewer": "agent", "toast": toast, "level": level}
    return render(request, "payments/_cancel_result.html", context, status=200 if result.ok else 409)


# --- Customer -----------------------------------------------------------------------------------------------


def customer_page(view):
    """Pay pages are private and single-purpose: never cached, never indexed, never leaking the URL onward."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return wrapped


def _page_status(context: dict) -> int:
    """For the full page: 404 for an unknown link, 410 for one that no longer takes payments, else 200.
    (htmx fragments answer 200 whatever the state, so that htmx swaps them in.)"""
    if context["payment_request"] is None:
        return 404
    return 410 if context["state"] in {"canceled", "expired", "failed"} else 200


@customer_page
@throttling.limit_token_guessing  # an unknown token (404) counts against the client's guesses
@require_http_methods(["GET", "HEAD"])
def pay(request: HttpRequest, token: str) -> HttpResponse:
    """The customer's payment page. A GET never changes anything (previews, HEAD, crawlers): the page's own
    script registers the click with a POST once it is shown in a browser."""
    payment_request = access.get_payment_request_for_customer(token)
    context = pay_page_context(payment_request, token=token)
    return render(request, "payments/pay.html", context, status=_page_status(context))


@customer_page
@throttling.limit_token_guessing
@require_POST
def open_link(request: HttpRequest, token: str) -> HttpResponse:
    """The click: start the pay window and open the gateway's checkout, then show its form."""
    payment_request = access.get_payment_request_for_customer(token)
    if payment_request is None:
        throttling.count_unknown_token(request)
    if payment_request is None or access.looks_like_link_preview(request.headers.get("User-Agent", "")):
        return HttpResponse(status=204)  # htmx leaves the page as it is; nothing was registered
    payment_request = actions.register_click(payment_request.pk).payment_request
    try:
        payment_request = actions.open_checkout(payment_request)
    except GatewayError as error:
        # Nothing was attached: the page says so and its button clicks again. The token is in this URL, so
        # the log names the request by id only.
        logger.warning(
            "Could not open a %s checkout for payment request %s: %s",
            payment_request.gateway,
            payment_request.pk,
            error,
        )
        context = pay_page_context(
            payment_request, token=token, checkout_unavailable=lifecycle.CHECKOUT_UNAVAILABLE_TEXT
        )
        return render(request, "payments/pay.html#payment", context)
    return render(request, "payments/pay.html#payment", pay_page_context(payment_request, token=token))


@customer_page
@throttling.limit_token_guessing
@sensitive_post_parameters("card_number", "expiry", "cvc")
@require_POST
def submit_payment(request: HttpRequest, token: str) -> HttpResponse:
    """The gateway form's submit: record the attempt (only inside the window), then hand it to the gateway."""
    payment_request = access.get_payment_request_for_customer(token)
    if payment_request is None:
        throttling.count_unknown_token(request)
    if payment_request is None or not payment_request.gateway_reference:
        return _whole_section(request, payment_request, token)
    gateway = get_gateway(payment_request.gateway)
    form = gateway.payment_form(request.POST)
    if not form.is_valid():
        context = pay_page_context(payment_request, token=token, form=form)
        return render(request, gateway.checkout_template, context, status=422)
    result = actions.record_payment_attempt(payment_request.pk, payment_method=form.summary())
    if not result.ok:
        return _whole_section(request, result.payment_request, token)
    started = gateway.start_payment(payment_request.gateway_reference, form, site_url=site_url(request))
    if started.outcome == PaymentOutcome.CLOSED:
        return _whole_section(request, result.payment_request, token)
    if started.redirect_url:  # a hosted payment page (Stripe Checkout) takes the card from here
        return HttpResponseClientRedirect(started.redirect_url)
    context = pay_page_context(
        result.payment_request,
        token=token,
        form=gateway.payment_form(),
        approved=started.outcome == PaymentOutcome.APPROVED,
        decline=started.message if started.outcome == PaymentOutcome.DECLINED else "",
    )
    return render(request, gateway.checkout_template, context)


def _whole_section(request: HttpRequest, payment_request, token: str) -> HttpResponse:
    """The link closed while the customer was typing: show its current state instead of the form."""
    response = render(request, "payments/pay.html#payment", pay_page_context(payment_request, token=token))
    return retarget(reswap(response, "outerHTML"), "#payment")


# --- Gateway ------------------------------------------------------------------------------------------------


@csrf_exempt  # gateways cannot send our CSRF token; the signature authenticates them instead
@require_POST
def gateway_webhook(request: HttpRequest, gateway_name: str) -> HttpResponse:
    """Verify the signature over the raw body (400 and no change if bad), store the event, answer at once.

    A task applies it once (`payments.inbox`): a slow database never makes the gateway time out and retry,
    and a duplicate delivery is answered 200 and changes nothing."""
    try:
        event = get_gateway(gateway_name).parse_webhook(request.body, request.headers)
    except InvalidWebhook as error:
        logger.warning("Rejected %s webhook: %s", gateway_name, error)
        return HttpResponseBadRequest("invalid webhook")
    stored = inbox.store_event(
        gateway_name, event_id=event.event_id, event_type=event.type, payload=event.payload
    )
    return JsonResponse({"received": True, "duplicate": stored is None})
