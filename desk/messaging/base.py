"""The channel adapter interface: send a text, send an approved template, verify and parse an inbound webhook.

Adapters make HTTP calls and nothing else: they never touch the database. A send returns the provider's
message id, or raises `PermanentFailure` (the provider refused this message: invalid number, template
required; retrying will not help) or `TemporaryFailure` (network, timeout, 5xx, rate limit: retry later).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import requests
from django.conf import settings


class PermanentFailure(Exception):
    """The provider refused the message; the text is the provider's reason, shown to the agent."""


class TemporaryFailure(Exception):
    """The provider could not be reached or asked us to come back later."""


class InvalidWebhook(Exception):
    """A webhook whose signature (or shared secret) does not verify, or whose body is not what we expect."""


@dataclass(frozen=True)
class InboundMessage:
    """A customer wrote to us. `event_id` is the provider's message id (replays carry the same one)."""

    event_id: str
    channel: str  # a Conversation.Channel value
    phone: str  # E.164
    body: str
    name: str = ""


@dataclass(frozen=True)
class StatusUpdate:
    """The provider reports what became of a message we sent (sent, delivered, read or failed)."""

    event_id: str
    provider_message_id: str
    status: str  # an OutboundDelivery.DeliveryStatus value
    error: str = ""


@dataclass(frozen=True)
class WebhookBatch:
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)


class ChannelAdapter(Protocol):
    name: str  # the provider's name as stored on OutboundDelivery and InboundWebhookEvent

    def is_configured(self) -> bool:
        """Whether the credentials to send are set."""

    def send_text(self, to: str, body: str, *, channel: str) -> str:
        """Send a free-form text to `to` (E.164); return the provider's message id."""

    def send_template(self, to: str, template: str, variables: list[str], *, channel: str) -> str:
        """Send an approved template with its body variables in order; return the provider's message id."""

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> WebhookBatch:
        """Verify the request before reading the body as data, then return its events (or InvalidWebhook)."""


def post_json(url: str, payload: dict, headers: dict) -> requests.Response:
    """POST JSON to a provider; a network error or timeout becomes TemporaryFailure."""
    try:
        return requests.post(url, json=payload, headers=headers, timeout=settings.MESSAGING_TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise TemporaryFailure(f"{type(error).__name__}: {error}") from None


def raise_for_http_status(response: requests.Response, reason: str) -> None:
    """5xx, 408 and 429 are worth retrying; any other 4xx is the provider refusing this message."""
    if response.status_code < 400:
        return
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise TemporaryFailure(f"HTTP {response.status_code}: {reason}")
    raise PermanentFailure(reason)


def digits(phone: str) -> str:
    """E.164 without the plus, as both providers write numbers."""
    return phone.lstrip("+")
