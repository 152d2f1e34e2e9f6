"""REST API v1 (Django Ninja), mounted at /api/v1/: thin handlers that check the key's scope, fetch, call one
`payments.actions` function and answer. OpenAPI 3 at /api/v1/openapi.json, readable docs at /api/v1/docs.

API keys act for the whole desk (they see every payment request, like a supervisor); writes name the agent
they are made for, and go through the same form and actions as the Agent Desk.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import Header, NinjaAPI, Path, Query
from ninja.security import HttpBearer

from desk import access as desk_access
from desk.models import Conversation
from payments import actions, lifecycle
from payments.forms import PaymentRequestForm
from payments.models import PaymentRequest
from payments.views import site_url

from . import idempotency, keys, pagination, representation
from .errors import ApiError, register_handlers
from .models import ApiKey
from .ratelimit import check_rate_limit
from .schemas import (
    MAX_ID,
    Error,
    PaymentRequestCreate,
    PaymentRequestDetail,
    PaymentRequestList,
    StatusValue,
)

DESCRIPTION = """
Chat 2 Pay payment requests for order management systems, ERPs, CRMs and data warehouses.

Authenticate with `Authorization: Bearer <key>` (keys are created by an admin). Errors are JSON with a
stable `code` and a human `message`. POSTs accept an `Idempotency-Key` header (Stripe semantics).
See docs/api.md in the repository for the whole guide, including signed webhooks.
"""

IDEMPOTENCY_KEY = Header(
    None,
    alias=idempotency.HEADER,
    max_length=255,
    description="Any unique string (e.g. a UUID): retries with the same key and body take effect once",
)
CREATED_GTE = Query(None, description="Sent at or after (ISO 8601)")
CREATED_LT = Query(None, description="Sent before (ISO 8601)")
ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 422: Error, 429: Error, 500: Error}


class ApiKeyAuth(HttpBearer):
    """Bearer API keys, checked and counted against the key's rate limit before any handler runs."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        if not token.strip():
            return None  # no key at all: 401 authentication_required
        api_key = keys.authenticate(token.strip())
        request.rate_limit_headers = check_rate_limit(api_key)
        return api_key


class ChatDeskApi(NinjaAPI):
    def create_response(self, request, data, *, status=None, temporal_response=None) -> HttpResponse:
        response = super().create_response(request, data, status=status, temporal_response=temporal_response)
        for name, value in getattr(request, "rate_limit_headers", {}).items():
            response.setdefault(name, value)
        return response

    def _get_urls(self):
        """Ninja's URLs, answering an unknown path or method under /api/v1/ (and /api/v1/ itself) in JSON
        too (Django and Ninja would answer an HTML page and a plain-text 405)."""
        urls = [
            URLPattern(url.pattern, self._json_errors(url.callback), url.default_args, url.name)
            if isinstance(url, URLPattern)
            else url
            for url in super()._get_urls()
        ]
        return [*urls, re_path(r"^", csrf_exempt(self._json_not_found), name="api-not-found")]

    def _json_errors(self, view):
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                response = view(request, *args, **kwargs)
            except Http404:  # Ninja's root view (/api/v1/ itself)
                return self._json_not_found(request)
            if not isinstance(response, HttpResponseNotAllowed):
                return response
            allowed = response["Allow"]
            error = ApiError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here; use {allowed}.",
                headers={"Allow": allowed},
            )
            return self.on_exception(request, error)

        return wrapped

    def _json_not_found(self, request: HttpRequest) -> HttpResponse:
        return self.on_exception(request, ApiError(404, "not_found", "No such API path."))


api = ChatDeskApi(
    title="Chat Desk API",
    version="1",
    description=DESCRIPTION,
    auth=ApiKeyAuth(),
    urls_namespace="api-v1",
)
register_handlers(api)


def _json_response(request: HttpRequest, outcome: idempotency.Outcome) -> HttpResponse:
    response = HttpResponse(outcome.body, status=outcome.status, content_type="application/json")
    if outcome.replayed:
        response["Idempotent-Replayed"] = "true"
    if outcome.status >= 500:  # a crash, logged with its traceback when it happened (idempotency.run)
        response._has_been_logged = True
    for name, value in getattr(request, "rate_limit_headers", {}).items():
        response.setdefault(name, value)
    return response


def _detail_json(payment_request: PaymentRequest) -> str:
    return representation.render(PaymentRequestDetail, representation.payment_request_detail(payment_request))


def _require_write(request: HttpRequest) -> None:
    if not request.auth.can_write:
        raise ApiError(403, "insufficient_scope", "This API key is read-only; writing needs a write key.")


def _utc(value: datetime, name: str) -> datetime:
    """A filter time in UTC (no offset: UTC). PostgreSQL refuses some offsets Python accepts (e.g. +16:36)."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ApiError(
            422, "validation_error", f"{name} is out of range.", errors={name: ["Out of range."]}
        ) from None


def _payment_requests():
    return PaymentRequest.objects.select_related("agent", "customer")


def _get_payment_request(pk: int) -> PaymentRequest:
    payment_request = _payment_requests().filter(pk=pk).first()
    if payment_request is None:
        raise ApiError(404, "payment_request_not_found", "No payment request with this id.")
    return payment_request


@api.get(
    "/payment-requests",
    response={200: PaymentRequestList, **ERRORS},
    summary="List payment requests, newest first",
    tags=["payment requests"],
)
def list_payment_requests(
    request: HttpRequest,
    status: StatusValue | None = None,
    agent_id: int | None = Query(None, ge=1, le=MAX_ID, description="The sending agent's user id"),
    order_number: str | None = Query(None, max_length=40, description="Exact order number"),
    created_gte: datetime | None = CREATED_GTE,
    created_lt: datetime | None = CREATED_LT,
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` of the previous page"),
    limit: int = Query(20, ge=1, le=100),
):
    payment_requests = _payment_requests()
    if status is not None:
        payment_requests = payment_requests.filter(status=status.value)
    if agent_id is not None:
        payment_requests = payment_requests.filter(agent_id=agent_id)
    if order_number is not None:
        if "\x00" in order_number:
            raise ApiError(422, "validation_error", "The order number is not valid.")
        payment_requests = payment_requests.filter(order_number=order_number)
    if created_gte is not None:
        payment_requests = payment_requests.filter(sent_at__gte=_utc(created_gte, "created_gte"))
    if created_lt is not None:
        payment_requests = payment_requests.filter(sent_at__lt=_utc(created_lt, "created_lt"))
    rows, next_cursor = pagination.page(payment_requests, cursor=cursor, limit=limit)
    return {
        "object": "list",
        "data": [representation.payment_request(row) for row in rows],
        "has_more": next_cursor is not None,
        "next_cursor": next_cursor,
    }


@api.get(
    "/payment-requests/{id}",
    response={200: PaymentRequestDetail, **ERRORS},
    summary="One payment request with its full status history",
    tags=["payment requests"],
)
def get_payment_request(request: HttpRequest, id: int = Path(..., ge=1, le=MAX_ID)):  # noqa: A002
    return representation.payment_request_detail(_get_payment_request(id))


def _agent(agent_id: int):
    agent = get_user_model().objects.filter(pk=agent_id, is_active=True).first()
    if agent is None or not desk_access.is_agent(agent):
        raise ApiError(422, "invalid_agent", "agent_id must be an active user in the agents group.")
    return agent


def _validated(payload: PaymentRequestCreate, conversation: Conversation, key: str) -> dict:
    """The desk's own form judges the input, so the API accepts exactly what the Chat 2 Pay form accepts."""
    form = PaymentRequestForm(
        data={
            "phone": payload.phone if payload.phone is not None else conversation.customer.phone,
            "amount": payload.amount,
            "currency": payload.currency or settings.CHAT2PAY_DEFAULT_CURRENCY,
            "order_number": payload.order_number,
            "description": payload.description,
            "idempotency_key": key,
        }
    )
    if not form.is_valid():
        errors = {
            "request" if field == "__all__" else field: [str(message) for message in messages]
            for field, messages in form.errors.items()
        }
        raise ApiError(422, "validation_error", "The payment request is not valid.", errors=errors)
    return form.cleaned_data


@api.post(
    "/payment-requests",
    response={201: PaymentRequestDetail, 409: Error, **ERRORS},
    summary="Create and send a payment request in a conversation, for an agent",
    tags=["payment requests"],
)
def create_payment_request(
    request: HttpRequest, payload: PaymentRequestCreate, idempotency_key: str | None = IDEMPOTENCY_KEY
):
    _require_write(request)

    def perform() -> idempotency.Outcome:
        agent = _agent(payload.agent_id)
        conversations = Conversation.objects.select_related("customer")
        conversation = conversations.filter(pk=payload.conversation_id).first()
        if conversation is None:
            raise ApiError(404, "conversation_not_found", "No conversation with this id.")
        # The send action is idempotent per (agent, key) too: derive its key from the client's, so even a
        # key whose claim went stale cannot send twice.
        send_key = (
            hashlib.sha256(f"api:{request.auth.pk}:{idempotency_key}".encode()).hexdigest()[:32]
            if idempotency_key
            else uuid.uuid4().hex
        )
        fields = _validated(payload, conversation, send_key)
        try:
            payment_request = actions.send_payment_request(
                conversation.pk, agent=agent, site_url=site_url(request), **fields
            )
        except actions.SendRefused as refusal:
            code = (
                "conversation_not_open"
                if refusal.message == lifecycle.CONVERSATION_NOT_OPEN_REFUSAL
                else "order_has_live_request"
            )
            return idempotency.Outcome(409, json.dumps({"code": code, "message": refusal.message}))
        payment_request = _get_payment_request(payment_request.pk)
        return idempotency.Outcome(201, _detail_json(payment_request))

    return _json_response(request, idempotency.run(request, request.auth, perform))


@api.post(
    "/payment-requests/{id}/cancel",
    response={200: PaymentRequestDetail, 409: Error, **ERRORS},
    summary="Cancel a payment request the customer has not opened yet",
    description=(
        "The same outcomes as the desk's Cancel payment, on behalf of the agent who sent it. Refusals "
        "(409) change nothing: `already_clicked`, `already_canceled`, `expired`, `not_delivered`."
    ),
    tags=["payment requests"],
)
def cancel_payment_request(
    request: HttpRequest,
    id: int = Path(..., ge=1, le=MAX_ID),  # noqa: A002
    idempotency_key: str | None = IDEMPOTENCY_KEY,
):
    _require_write(request)

    def perform() -> idempotency.Outcome:
        payment_request = _get_payment_request(id)
        result = actions.cancel_payment_request(payment_request.pk, agent=payment_request.agent)
        if not result.ok:
            body = {"code": result.refusal.value, "message": result.refusal.label}
            return idempotency.Outcome(409, json.dumps(body))
        payment_request = _get_payment_request(id)
        return idempotency.Outcome(200, _detail_json(payment_request))

    return _json_response(request, idempotency.run(request, request.auth, perform))
