"""Local stand-ins, on loopback threads, for the two messaging APIs the adapters call.

Each speaks its provider's documented request and response shapes, checks the credentials, keeps every
request it received, and can be told to refuse a number (the provider's permanent error) or to fail the next
calls with a 5xx (a temporary one). Nothing of the adapters is patched: settings point them here.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandIn:
    def __init__(self) -> None:
        self.requests: list[dict] = []  # {"path", "headers", "json"}
        self.refuse: dict[str, tuple[int, dict]] = {}  # number (digits) -> (status, error body)
        self.fail_next = 0  # answer this many calls with 503
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sent(self) -> list[dict]:
        with self.lock:
            return [r["json"] for r in self.requests]

    def answer(self, path: str, headers: dict, payload: dict) -> tuple[int, dict]:
        raise NotImplementedError

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = None
                with stand_in.lock:
                    stand_in.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "json": payload}
                    )
                    if stand_in.fail_next:
                        stand_in.fail_next -= 1
                        status, body = (
                            503,
                            {"error": {"message": "Service temporarily unavailable", "code": 2}},
                        )
                    else:
                        status, body = stand_in.answer(self.path, dict(self.headers), payload)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler


class WhatsAppCloudStandIn(StandIn):
    """`POST /{phone-number-id}/messages` of the Graph API, bearer token required."""

    def __init__(self, *, token: str, phone_number_id: str) -> None:
        super().__init__()
        self.token, self.phone_number_id = token, phone_number_id

    def answer(self, path, headers, payload):
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {
                "error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}
            }
        if (
            path != f"/{self.phone_number_id}/messages"
            or not payload
            or payload.get("messaging_product") != "whatsapp"
        ):
            return 400, {"error": {"message": "Invalid parameter", "type": "OAuthException", "code": 100}}
        if payload["to"] in self.refuse:
            return self.refuse[payload["to"]]
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": payload["to"], "wa_id": payload["to"]}],
            "messages": [{"id": f"wamid.{secrets.token_hex(16)}"}],
        }

    @staticmethod
    def re_engagement_error() -> tuple[int, dict]:
        """What WhatsApp answers to free text outside the 24-hour window (error 131047)."""
        return 400, {
            "error": {
                "message": "(#131047) Re-engagement message",
                "type": "OAuthException",
                "code": 131047,
                "error_data": {
                    "messaging_product": "whatsapp",
                    "details": "Message failed to send because more than 24 hours have passed since the "
                    "customer last replied to this number.",
                },
                "fbtrace_id": "AbCdEf",
            }
        }

    @staticmethod
    def invalid_number_error() -> tuple[int, dict]:
        return 400, {
            "error": {
                "message": "(#131026) Message undeliverable",
                "type": "OAuthException",
                "code": 131026,
                "error_data": {
                    "messaging_product": "whatsapp",
                    "details": "Recipient is not a WhatsApp user",
                },
            }
        }


class ClickatellStandIn(StandIn):
    """`POST /v1/message` of the One API, the integration's API key in `Authorization`."""

    def __init__(self, *, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key

    def answer(self, path, headers, payload):
        if headers.get("Authorization") != self.api_key:
            return 401, {"messages": [], "error": {"code": 1, "description": "Invalid or missing API key."}}
        if path != "/v1/message" or not payload or not payload.get("messages"):
            return 400, {
                "messages": [],
                "error": {"code": 101, "description": "Invalid or missing parameters."},
            }
        results = []
        for message in payload["messages"]:
            if message["to"] in self.refuse:
                code, description = self.refuse[message["to"]]
                results.append(
                    {
                        "accepted": False,
                        "to": message["to"],
                        "error": {"code": code, "description": description},
                    }
                )
            else:
                results.append({"apiMessageId": secrets.token_hex(16), "accepted": True, "to": message["to"]})
        return 202, {"messages": results, "error": None}
