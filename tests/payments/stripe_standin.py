"""A local stand-in for the part of Stripe's API that the Checkout gateway uses, on loopback.

It speaks Stripe's documented shapes (form-encoded requests, JSON objects, `{"error": {...}}` answers,
replayed responses for a repeated `Idempotency-Key`), keeps its own sessions, PaymentIntents and refunds,
and lets a test play the customer on the hosted page (`complete`) or Stripe's own clock
(`expire_at_stripe`). The real `stripe` library talks to it through `settings.STRIPE_API_BASE`; nothing of
the adapter is patched."""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


def _nested(pairs: list[tuple[str, str]]) -> dict:
    """`a[0][b]=zar` -> {"a": {"0": {"b": "zar"}}} (Stripe's form encoding of nested parameters)."""
    result: dict = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


class StripeStandIn:
    def __init__(self) -> None:
        self.sessions: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict, dict]] = []  # (method, path, params, headers)
        self.idempotent: dict[str, tuple[int, dict]] = {}
        self.fail_refunds = False
        self.refund_delay = 0.0  # seconds a refund takes at "Stripe" (requests queue behind it meanwhile)
        # Stripe's own outage: this many session creations answer 500 (kept under their idempotency key, as
        # Stripe keeps every answer, so repeating the key repeats the 500).
        self.fail_session_creates = 0
        # A lost answer: this many session creations happen but the connection closes before the response.
        self.drop_session_responses = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StripeStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- What the customer and Stripe's clock do --------------------------------------------------------

    def complete(self, session_id: str, *, at: float | None = None, amount: int | None = None) -> dict:
        """The customer pays on the hosted page at `at` (unix time); returns the session."""
        with self.lock:
            session = self.sessions[session_id]
            intent = {
                "id": f"pi_{secrets.token_hex(12)}",
                "object": "payment_intent",
                "amount": amount if amount is not None else session["amount_total"],
                "currency": session["currency"],
                "created": int(at if at is not None else time.time()),
                "status": "succeeded",
                "metadata": dict(session["metadata"]),
                "livemode": False,
            }
            self.intents[intent["id"]] = intent
            session.update(
                status="complete",
                payment_status="paid",
                payment_intent=intent["id"],
                amount_total=intent["amount"],
                url=None,
            )
            return json.loads(json.dumps(session))

    def decline(self, session_id: str, *, message: str = "Your card was declined.") -> dict:
        """A failed attempt on the hosted page: a PaymentIntent with `last_payment_error`."""
        with self.lock:
            session = self.sessions[session_id]
            return {
                "id": f"pi_{secrets.token_hex(12)}",
                "object": "payment_intent",
                "amount": session["amount_total"],
                "currency": session["currency"],
                "created": int(time.time()),
                "status": "requires_payment_method",
                "metadata": {**session["metadata"], "checkout_session": session_id},
                "last_payment_error": {
                    "code": "card_declined",
                    "message": message,
                    "payment_method": {"card": {"brand": "visa", "last4": "0002"}},
                },
                "livemode": False,
            }

    def expire_at_stripe(self, session_id: str) -> dict:
        with self.lock:
            self.sessions[session_id].update(status="expired", url=None)
            return json.loads(json.dumps(self.sessions[session_id]))

    def event(self, type_: str, obj: dict, *, livemode: bool = False) -> dict:
        """An event as Stripe posts it: the object as it was when the event happened."""
        return {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj))},
            "livemode": livemode,
            "pending_webhooks": 1,
            "type": type_,
        }

    def calls(self, method: str, prefix: str) -> list[tuple[str, str, dict, dict]]:
        return [call for call in self.requests if call[0] == method and call[1].startswith(prefix)]

    # --- The API --------------------------------------------------------------------------------------------

    def _create_session(self, params: dict) -> tuple[int, dict]:
        item = params["line_items"]["0"]
        session_id = f"cs_test_{secrets.token_hex(16)}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_total": int(item["price_data"]["unit_amount"]) * int(item.get("quantity", "1")),
            "currency": item["price_data"]["currency"],
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "mode": params["mode"],
            "payment_method_types": list(params.get("payment_method_types", {}).values()),
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "created": int(time.time()),
            "expires_at": int(params["expires_at"]),
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.url}/c/pay/{session_id}",
            "livemode": False,
        }
        if session["expires_at"] < session["created"] + 1800:
            return 400, _error("expires_at must be at least 30 minutes from now", param="expires_at")
        self.sessions[session_id] = session
        return 200, session

    def _session(self, session_id: str, expand: list[str]) -> tuple[int, dict]:
        if session_id not in self.sessions:
            return 404, _error(f"No such checkout.session: '{session_id}'", code="resource_missing")
        session = json.loads(json.dumps(self.sessions[session_id]))
        if "payment_intent" in expand and session["payment_intent"]:
            session["payment_intent"] = self.intents[session["payment_intent"]]
        return 200, session

    def _expire(self, session_id: str) -> tuple[int, dict]:
        if session_id not in self.sessions:
            return 404, _error(f"No such checkout.session: '{session_id}'", code="resource_missing")
        session = self.sessions[session_id]
        if session["status"] != "open":
            return 400, _error(
                f'Only Checkout Sessions with a status in ["open"] can be expired. This session has a '
                f"status of `{session['status']}`."
            )
        session.update(status="expired", url=None)
        return 200, session

    def _refund(self, params: dict) -> tuple[int, dict]:
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None:
            return 404, _error("No such payment_intent", code="resource_missing")
        time.sleep(self.refund_delay)
        if self.fail_refunds:
            return 402, {
                "error": {"type": "card_error", "code": "refund_failed", "message": "Refund failed."}
            }
        refund = {
            "id": f"re_{secrets.token_hex(12)}",
            "object": "refund",
            "amount": int(params.get("amount", intent["amount"])),
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        return 200, refund

    def handle(self, method: str, path: str, params: dict, headers: dict) -> tuple[int, dict] | None:
        with self.lock:
            self.requests.append((method, path, params, headers))
            if not headers.get("authorization", "").startswith("Bearer sk_"):
                return 401, {
                    "error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}
                }
            key = headers.get("idempotency-key")
            parts = [part for part in path.split("/") if part]
            if method == "POST" and key and key in self.idempotent:
                answer = self.idempotent[key]  # Stripe replays the first answer for a repeated key
            elif method == "POST" and parts == ["v1", "checkout", "sessions"] and self.fail_session_creates:
                self.fail_session_creates -= 1
                answer = 500, {"error": {"type": "api_error", "message": "An unknown error occurred."}}
            elif method == "POST" and parts == ["v1", "checkout", "sessions"]:
                answer = self._create_session(params)
            elif method == "GET" and parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4:
                answer = self._session(parts[3], list(params.get("expand", {}).values()))
            elif method == "POST" and parts[:3] == ["v1", "checkout", "sessions"] and parts[4:] == ["expire"]:
                answer = self._expire(parts[3])
            elif method == "POST" and parts == ["v1", "refunds"]:
                answer = self._refund(params)
            else:
                answer = 404, _error(f"Unrecognized request URL ({method}: {path})")
            if method == "POST" and key:
                self.idempotent[key] = answer
            if parts == ["v1", "checkout", "sessions"] and self.drop_session_responses:
                self.drop_session_responses -= 1
                return None  # the session exists; its answer is lost on the way
            return answer

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = _nested(parse_qsl(url.query) + parse_qsl(body))
                headers = {key.lower(): value for key, value in self.headers.items()}
                answer = stand_in.handle(method, url.path, params, headers)
                if answer is None:
                    self.close_connection = True
                    return
                status, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{secrets.token_hex(8)}")
                if status >= 500:  # a kept answer: Stripe tells its libraries not to retry it
                    self.send_header("Stripe-Should-Retry", "false")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

            def log_message(self, *args) -> None:
                pass

        return Handler


def _error(message: str, *, code: str = "", param: str = "") -> dict:
    return {"error": {"type": "invalid_request_error", "message": message, "code": code, "param": param}}
