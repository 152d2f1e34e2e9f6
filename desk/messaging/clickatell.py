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
# Message statuses of the One API's Message Status Table (docs.clickatell.com/channels/one-api/
# one-api-message-status-table/): the name is authoritative, the numeric `statusCode` the fallback.
STATUSES = {"SENT_TO_SUPPLIER": "sent", "DEVICE_ACK": "delivered", "READ": "read"}
STATUS_CODES = {4: "sent", 5: "delivered", 6: "read"}
# UNKNOWN (1), QUEUED (2), SCHEDULED (3): nothing the agent needs yet; EMULATED (24): a test integration.
NOT_YET = {"UNKNOWN", "QUEUED", "SCHEDULED", "EMULATED"}
NOT_YET_CODES = {1, 2, 3, 24}
# Everything from code 20 on is an error: EXPIRED, STOPPED_BY_USER, DELIVERY_FAILURE, ROUTING_ERROR, the
# MEDIA_*, ENCRYPTION_* and WHATSAPP_* families, RECIPIENT_DOES_NOT_EXIST, INSUFFICIENT_ACCOUNT_BALANCE, ...
FIRST_ERROR_CODE = 20
ERROR_STATUSES = {
    "EXPIRED",
    "STOPPED_BY_USER",
    "STOPPED_BY_ADMIN",
    "DELIVERY_FAILURE",
    "INSUFFICIENT_ACCOUNT_BALANCE",
    "VOLUME_LIMIT",
    "VOLUME_LIMIT_DAILY",
    "VOLUME_LIMIT_MONTHLY",
    "RECIPIENT_DOES_NOT_EXIST",
    "ROUTING_ERROR",
}
ERROR_FAMILIES = ("MEDIA_", "ENCRYPTION_", "WHATSAPP_")


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
            # The reply callback carries one list per kind of inbound message: `moText`, and `moMedia`,
            # `moLocation`, ... (new kinds are added over time and must not break us). Status callbacks
            # carry `messageStatusUpdate`.
            for kind, messages in event.items():
                if kind.startswith("mo") and isinstance(messages, list):
                    batch.messages.extend(_inbound(message, kind) for message in messages)
            for update in event.get("messageStatusUpdate", []):
                status = _status(update)
                if status:
                    batch.statuses.append(status)
            if not (batch.messages or batch.statuses) and not event:
                raise KeyError("event")
            return batch
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidWebhook(f"malformed Clickatell webhook body: {error!r}") from None


def _inbound(message: dict, kind: str) -> InboundMessage:
    # Only `moText` content is text: a media message's `content` is the file itself, base64-encoded.
    content = message.get("content") if kind == "moText" else message.get("caption")
    if not isinstance(content, str) or not content.strip():
        content = f"[{kind.removeprefix('mo').lower() or 'media'} message]"
    channel = "whatsapp" if str(message.get("channel", "")).strip().lower() == "whatsapp" else "sms"
    return InboundMessage(
        event_id=str(message["messageId"]),
        channel=channel,
        phone="+" + digits(str(message["from"])),
        body=content,
        name=str((message.get("whatsapp") or {}).get("profileName") or "") if channel == "whatsapp" else "",
    )


def _status(update: dict) -> StatusUpdate | None:
    raw = str(update.get("status") or "").strip().upper()
    code = int(update.get("statusCode") or 0)
    if raw in STATUSES:
        status = STATUSES[raw]
    elif raw in NOT_YET or (not raw and code in NOT_YET_CODES):
        return None
    elif raw in ERROR_STATUSES or raw.startswith(ERROR_FAMILIES):
        status = "failed"
    elif code in STATUS_CODES:
        status = STATUS_CODES[code]
    elif code >= FIRST_ERROR_CODE and code not in NOT_YET_CODES:
        status = "failed"
    else:
        return None  # a status this desk does not know yet: acknowledged, ignored
    message_id = str(update["messageId"])
    error = ""
    if status == "failed":
        reason = update.get("statusDescription") or (update.get("error") or {}).get("description")
        error = f"Clickatell: {reason or raw.replace('_', ' ').lower() or f'status {code}'}"
    return StatusUpdate(
        event_id=f"{message_id}:{raw or code}",
        provider_message_id=message_id,
        status=status,
        error=error,
    )
