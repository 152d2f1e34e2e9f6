"""Messaging fixtures: the provider stand-ins on loopback, settings pointing at them, signed webhooks."""

from __future__ import annotations

import json
import secrets

import pytest
from django.test import Client

from desk.messaging import whatsapp

from .standins import ClickatellStandIn, WhatsAppCloudStandIn

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
CLICKATELL_SECRET = "test-clickatell-secret"


@pytest.fixture
def whatsapp_api(settings, celery_eager):
    stand_in = WhatsAppCloudStandIn(token="EAAtest", phone_number_id="1055512345").start()
    settings.MESSAGING_WHATSAPP_PROVIDER = "cloud"
    settings.WHATSAPP_API_BASE = stand_in.url
    settings.WHATSAPP_ACCESS_TOKEN = "EAAtest"
    settings.WHATSAPP_PHONE_NUMBER_ID = "1055512345"
    settings.WHATSAPP_APP_SECRET = APP_SECRET
    settings.WHATSAPP_VERIFY_TOKEN = VERIFY_TOKEN
    settings.WHATSAPP_TEMPLATE_PAYMENT_REQUEST = "chat2pay_link"
    settings.WHATSAPP_TEMPLATE_CANCEL_NOTICE = "chat2pay_canceled"
    yield stand_in
    stand_in.stop()


@pytest.fixture
def clickatell_api(settings, celery_eager):
    stand_in = ClickatellStandIn(api_key="ck-test-key").start()
    settings.CLICKATELL_API_BASE = stand_in.url
    settings.CLICKATELL_API_KEY = "ck-test-key"
    settings.CLICKATELL_WEBHOOK_SECRET = CLICKATELL_SECRET
    settings.WHATSAPP_TEMPLATE_PAYMENT_REQUEST = "chat2pay_link"
    settings.WHATSAPP_TEMPLATE_CANCEL_NOTICE = "chat2pay_canceled"
    yield stand_in
    stand_in.stop()


# --- WhatsApp Cloud API webhooks ---------------------------------------------------------------------------


def wa_envelope(value: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "1055512345",
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def wa_message(phone: str, text: str, *, name: str = "Thandi", message_id: str | None = None) -> bytes:
    wa_id = phone.lstrip("+")
    return json.dumps(
        wa_envelope(
            {
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                "messages": [
                    {
                        "from": wa_id,
                        "id": message_id or f"wamid.{secrets.token_hex(12)}",
                        "timestamp": "1750000000",
                        "type": "text",
                        "text": {"body": text},
                    }
                ],
            }
        )
    ).encode()


def wa_status(
    provider_message_id: str, status: str, *, phone: str = "27820000000", error: dict | None = None
) -> bytes:
    entry = {
        "id": provider_message_id,
        "status": status,
        "timestamp": "1750000001",
        "recipient_id": phone.lstrip("+"),
    }
    if error:
        entry["errors"] = [error]
    return json.dumps(wa_envelope({"statuses": [entry]})).encode()


def post_whatsapp(body: bytes, *, signature: str | None = None, client: Client | None = None):
    return (client or Client()).post(
        "/webhooks/whatsapp/",
        data=body,
        content_type="application/json",
        headers={
            whatsapp.SIGNATURE_HEADER: whatsapp.sign(body, APP_SECRET) if signature is None else signature
        },
    )


# --- Clickatell webhooks ---------------------------------------------------------------------------------


# Shapes of Clickatell's One API client callbacks (help.clickatell.com/developers-api-reference/reference/
# one-api-client-callbacks): `{"integrationId", "integrationName", "event": {"moText": [...]}}` for
# replies and `{"event": {"messageStatusUpdate": [...]}}` for statuses, with the Message Status Table's names
# and codes.
def ck_callback(event: dict) -> bytes:
    return json.dumps(
        {"integrationId": "fa8090815f05d5ed015f0b5b56080cd2", "integrationName": "Chat Desk", "event": event}
    ).encode()


def ck_message(phone: str, text: str, *, channel: str = "sms", message_id: str | None = None) -> bytes:
    message = {
        "channel": channel,
        "messageId": message_id or secrets.token_hex(16),
        "relatedMessageId": None,
        "relatedClientMessageId": None,
        "from": phone.lstrip("+"),
        "to": "27870000000",
        "timestamp": 1750000000000,
        "content": text,
        "charset": "UTF-8",
    }
    if channel == "whatsapp":
        message["whatsapp"] = {"profileName": "Thandi"}
    else:
        message["sms"] = {"network": "Network ID"}
    return ck_callback({"moText": [message]})


STATUS_TABLE = {"SENT_TO_SUPPLIER": 4, "DEVICE_ACK": 5, "READ": 6, "DELIVERY_FAILURE": 23}


def ck_status(
    provider_message_id: str, status: str, *, channel: str = "sms", code: int | None = None
) -> bytes:
    update = {
        "channel": channel,
        "messageId": provider_message_id,
        "clientMessageId": None,
        "timestamp": 1750000001000,
        "status": status,
        "statusCode": code if code is not None else STATUS_TABLE.get(status, 0),
    }
    return ck_callback({"messageStatusUpdate": [update]})


def post_clickatell(body: bytes, *, secret: str | None = CLICKATELL_SECRET, client: Client | None = None):
    url = "/webhooks/clickatell/" if secret is None else f"/webhooks/clickatell/?secret={secret}"
    return (client or Client()).post(url, data=body, content_type="application/json")
