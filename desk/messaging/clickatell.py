"""Clickatell One API (SMS and WhatsApp): `POST {CLICKATELL_API_BASE}/v1/message` with the integration's API
key in `Authorization`; inbound messages and delivery callbacks arrive at /webhooks/clickatell/.

Clickatell does not sign its callbacks, so the callback URL configured in the Clickatell portal carries a
shared secret, `https://desk.example.com/webhooks/clickatell/?secret=<CLICKATELL_WEBHOOK_SECRET>`, or a proxy
adds it as the `X-Clickatell-Secret` header; it is compared in constant time before the body is read.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping

from django.conf import settings

from . import sms
from .base import (
    InboundMessage,
    InvalidWebhook,
    PermanentFailure,
    StatusUpdate,
    WebhookBatch,
    digits,
    post_json,
    raise_for_http_status,
)

SECRET_HEADER = "X-Clickatell-Secret"
SECRET_PARAMETER = "secret"
# Clickatell's message statuses (by name, or by the numeric statusCode of older callbacks).
STATUSES = {
    "SENT_TO_SUPPLIER": "sent",
    "DELIVERED_TO_GATEWAY": "sent",
    "SENT": "sent",
    "RECEIVED_BY_RECIPIENT": "delivered",
    "DELIVERED": "delivered",
    "READ": "read",
    "ERROR_DELIVERING": "failed",
    "FAILED": "failed",
    "EXPIRED": "failed",
    "UNDELIVERABLE": "failed",
    "REJECTED": "failed",
    "ROUTING_ERROR": "failed",
    "OUT_OF_CREDIT": "failed",
}
STATUS_CODES = {3: "sent", 4: "delivered", 5: "failed", 7: "failed", 9: "failed", 10: "failed", 14: "failed"}


def _error_reason(response) -> str:
    try:
        payload = response.json()
        error = payload.get("error") or (payload.get("messages") or [{}])[0].get("error") or {}
        return f"Clickatell: {error.get('description') or error} (#{error.get('code')})"
    except (ValueError, AttributeError, IndexError, TypeError):
        return f"Clickatell answered HTTP {response.status_code}"


class ClickatellAdapter:
    name = "clickatell"

    def is_configured(self) -> bool:
        return bool(settings.CLICKATELL_API_KEY)

    def _send(self, message: dict) -> str:
        response = post_json(
            f"{settings.CLICKATELL_API_BASE}/v1/message",
            {"messages": [message]},
            {"Authorization": settings.CLICKATELL_API_KEY, "Accept": "application/json"},
        )
        raise_for_http_status(response, _error_reason(response))
        try:
            result = response.json()["messages"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PermanentFailure("Clickatell answered without a message result") from None
        if not result.get("accepted") or not result.get("apiMessageId"):
            error = result.get("error") or {}
            raise PermanentFailure(
                f"Clickatell: {error.get('description') or 'message not accepted'} (#{error.get('code')})"
            )
        return str(result["apiMessageId"])

    def send_text(self, to: str, body: str, *, channel: str) -> str:
        if channel == "sms":
            parts = sms.split(body)
            if len(parts) > settings.CLICKATELL_SMS_MAX_SEGMENTS:
                raise PermanentFailure(
                    f"The message needs {len(parts)} SMS parts ({sms.encoding_for(body).name}); "
                    f"the most allowed is {settings.CLICKATELL_SMS_MAX_SEGMENTS}."
                )
        # One API message: Clickatell concatenates a long SMS (the parts above) so it arrives as one text.
        return self._send({"channel": channel, "to": digits(to), "content": body})

    def send_template(self, to: str, template: str, variables: list[str], *, channel: str) -> str:
        parameters = {str(i): value for i, value in enumerate(variables, start=1)}
        return self._send(
            {
                "channel": channel,
                "to": digits(to),
                "template": {"templateName": template, "body": {"parameters": parameters}},
            }
        )

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> WebhookBatch:
        secret = settings.CLICKATELL_WEBHOOK_SECRET
        given = headers.get(SECRET_HEADER) or query.get(SECRET_PARAMETER) or ""
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            raise InvalidWebhook("bad or missing Clickatell webhook secret")
        try:
            payload = json.loads(body)
            event = payload.get("event", {}) if isinstance(payload, dict) else None
            if not isinstance(event, dict):
                raise TypeError("event is not an object")
            batch = WebhookBatch()
            for message in event.get("moMessages", []):
                batch.messages.append(_inbound(message))
            for update in event.get("messageStatusUpdate", []):
                status = _status(update)
                if status:
                    batch.statuses.append(status)
            if not (batch.messages or batch.statuses) and not event:
                raise KeyError("event")
            return batch
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidWebhook(f"malformed Clickatell webhook body: {error!r}") from None


def _inbound(message: dict) -> InboundMessage:
    content = message.get("content")
    if not isinstance(content, str):
        content = f"[{str(message.get('type', 'media')).lower()} message]"
    channel = "whatsapp" if message.get("channel") == "whatsapp" else "sms"
    return InboundMessage(
        event_id=str(message["messageId"]),
        channel=channel,
        phone="+" + digits(str(message["from"])),
        body=content,
        name=str(message.get("whatsapp", {}).get("profileName", "")) if channel == "whatsapp" else "",
    )


def _status(update: dict) -> StatusUpdate | None:
    raw = str(update.get("status", "")).upper()
    status = STATUSES.get(raw) or STATUS_CODES.get(int(update.get("statusCode") or 0))
    if status is None:
        return None
    message_id = str(update["messageId"])
    error = ""
    if status == "failed":
        error = f"Clickatell: {update.get('error', {}).get('description') or raw.replace('_', ' ').lower()}"
    return StatusUpdate(
        event_id=f"{message_id}:{raw or update.get('statusCode')}",
        provider_message_id=message_id,
        status=status,
        error=error,
    )
