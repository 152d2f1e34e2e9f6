"""Integration test helpers: API keys, an API client that sends them, and a webhook receiver on loopback."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from dataclasses import dataclass, field

import pytest
from django.test import Client

from api import keys
from api.models import WebhookEndpoint


class ApiClient(Client):
    """Django's test client with the API key as a bearer token and JSON bodies."""

    def __init__(self, key: str | None, **kwargs) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        super().__init__(headers=headers, **kwargs)

    def post_json(self, path: str, body: dict | None = None, *, idempotency_key: str | None = None):
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.post(path, data=json.dumps(body or {}), content_type="application/json", headers=headers)


@pytest.fixture
def write_key(db) -> str:
    return keys.create_api_key(name="OMS", scope="write")[1]


@pytest.fixture
def read_key(db) -> str:
    return keys.create_api_key(name="Warehouse", scope="read")[1]


@pytest.fixture
def oms(write_key) -> ApiClient:
    """An integration holding a read-write key."""
    return ApiClient(write_key)


@pytest.fixture
def warehouse(read_key) -> ApiClient:
    """An integration holding a read-only key."""
    return ApiClient(read_key)


def create_body(conversation, agent, **overrides) -> dict:
    return {
        "conversation_id": conversation.pk,
        "agent_id": agent.pk,
        "amount": "120.50",
        "currency": "ZAR",
        "order_number": "API-1001",
        **overrides,
    }


# --- A webhook receiver on loopback -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Receiver:
    """A real HTTP server in a thread. It answers 500 to the first `fail_first` POSTs of each event id, then
    200, and records every POST it got (headers and the exact body bytes)."""

    port: int = field(default_factory=free_port)
    fail_first: int = 0
    received: list[tuple[dict, bytes, int]] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event_id = json.loads(body)["id"]
                seen = sum(1 for _, b, _ in receiver.received if json.loads(b)["id"] == event_id)
                status = 500 if seen < receiver.fail_first else 200
                receiver.received.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"not now")

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[dict]:
        """The events this receiver acknowledged with 2xx, in arrival order."""
        return [json.loads(body) for _, body, status in self.received if status == 200]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.stop()


def endpoint_for(receiver: Receiver, *event_types: str) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url=receiver.url, event_types=list(event_types or WebhookEndpoint.EventType.values)
    )
