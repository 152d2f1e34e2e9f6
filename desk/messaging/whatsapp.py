"""Meta's WhatsApp Cloud API (Graph API): `POST {WHATSAPP_API_BASE}/{phone-number-id}/messages` with a bearer
token, and the webhook at /webhooks/whatsapp/ (GET handshake with the verify token; POSTs signed with the app
secret in `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from django.conf import settings

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

SIGNATURE_HEADER = "X-Hub-Signature-256"
STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


def sign(body: bytes, secret: str | None = None) -> str:
    """The `X-Hub-Signature-256` value Meta sends for `body`."""
    secret = settings.WHATSAPP_APP_SECRET if secret is None else secret
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_subscription(query: Mapping[str, str]) -> str | None:
    """The GET handshake: the `hub.challenge` to echo back, or None if the verify token is wrong."""
    token = settings.WHATSAPP_VERIFY_TOKEN
    if (
        token
        and query.get("hub.mode") == "subscribe"
        and hmac.compare_digest(query.get("hub.verify_token", "").encode(), token.encode())
    ):
        return query.get("hub.challenge", "")
    return None


def _error_reason(response) -> str:
    """Graph API errors: {"error": {"message", "code", "error_data": {"details"}}} -> "details (#code)"."""
    try:
        error = response.json()["error"]
        detail = (error.get("error_data") or {}).get("details") or error.get("message") or ""
        return f"WhatsApp: {detail} (#{error.get('code')})"
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"WhatsApp answered HTTP {response.status_code}"


class WhatsAppCloudAdapter:
    name = "whatsapp"

    def is_configured(self) -> bool:
        return bool(settings.WHATSAPP_ACCESS_TOKEN and settings.WHATSAPP_PHONE_NUMBER_ID)

    def _send(self, to: str, message: dict) -> str:
        response = post_json(
            f"{settings.WHATSAPP_API_BASE}/{settings.WHATSAPP_PHONE_NUMBER_ID}/messages",
            {"messaging_product": "whatsapp", "recipient_type": "individual", "to": digits(to), **message},
            {"Authorization": f"Bearer {settings.WHATSAPP_ACCESS_TOKEN}"},
        )
        raise_for_http_status(response, _error_reason(response))
        try:
            return str(response.json()["messages"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise PermanentFailure("WhatsApp accepted the message but returned no message id") from None

    def send_text(self, to: str, body: str, *, channel: str) -> str:
        return self._send(to, {"type": "text", "text": {"preview_url": True, "body": body}})

    def send_template(self, to: str, template: str, variables: list[str], *, channel: str) -> str:
        components = [{"type": "body", "parameters": [{"type": "text", "text": v} for v in variables]}]
        return self._send(
            to,
            {
                "type": "template",
                "template": {
                    "name": template,
                    "language": {"code": settings.WHATSAPP_TEMPLATE_LANGUAGE},
                    "components": components,
                },
            },
        )

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> WebhookBatch:
        secret = settings.WHATSAPP_APP_SECRET
        given = headers.get(SIGNATURE_HEADER) or ""
        if not secret or not hmac.compare_digest(given.encode(), sign(body, secret).encode()):
            raise InvalidWebhook("bad or missing X-Hub-Signature-256")
        try:
            payload = json.loads(body)
            batch = WebhookBatch()
            for entry in payload["entry"]:
                for change in entry.get("changes", []):
                    value = change.get("value") or {}
                    names = {
                        c.get("wa_id"): (c.get("profile") or {}).get("name", "")
                        for c in value.get("contacts", [])
                    }
                    for message in value.get("messages", []):
                        batch.messages.append(_inbound(message, names))
                    for status in value.get("statuses", []):
                        if status["status"] in STATUSES:
                            errors = status.get("errors") or [{}]
                            error = errors[0]
                            reason = (
                                (error.get("error_data") or {}).get("details") or error.get("title") or ""
                            )
                            batch.statuses.append(
                                StatusUpdate(
                                    event_id=f"{status['id']}:{status['status']}",
                                    provider_message_id=str(status["id"]),
                                    status=STATUSES[status["status"]],
                                    error=f"WhatsApp: {reason} (#{error.get('code')})" if reason else "",
                                )
                            )
            return batch
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidWebhook(f"malformed WhatsApp webhook body: {error!r}") from None


def _inbound(message: dict, names: dict) -> InboundMessage:
    kind = message.get("type")
    if kind == "text":
        text = message["text"]["body"]
    elif kind == "button":
        text = message["button"]["text"]
    else:  # media, location, ...: the desk shows that something arrived
        text = f"[{kind} message]"
    return InboundMessage(
        event_id=str(message["id"]),
        channel="whatsapp",
        phone="+" + digits(str(message["from"])),
        body=text,
        name=names.get(message["from"], ""),
    )
