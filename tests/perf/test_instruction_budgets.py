"""Regression guard for the CPU cost of the hot paths: Python bytecode instructions executed, never clocks.

bench/ measures time on a noisy machine; this counts work, which is deterministic for a given set of package
versions, the way callgrind's instruction counts are (and without needing valgrind on CI). The hot paths are
the ones every status change and every webhook pays for: rendering the pushed card, and verifying a webhook's
signature before anything is read. Budgets are today's counts with headroom for library upgrades; a change
that makes a path much more expensive fails here instead of in `make bench`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import pytest
import stripe

from payments import realtime
from payments.gateways import sandbox
from payments.gateways import stripe as stripe_gateway
from payments.lifecycle import Status
from tests.payments.conftest import make_request, sandbox_event

pytestmark = pytest.mark.django_db

# Budgets: measured counts (Python 3.11, Django 5.2, stripe 16: 10,051 / 536 / 5,492) plus ~30 % for library
# upgrades. Lower them when a change makes a path cheaper. (The card was 38,130 while each page's socket
# re-read its row before rendering it; the change's own process now renders it from the row it wrote.)
CARD_RENDER_INSTRUCTIONS = 13_000
SANDBOX_VERIFY_INSTRUCTIONS = 700
STRIPE_VERIFY_INSTRUCTIONS = 7_200


def instructions(function: Callable[[], object]) -> int:
    """How many bytecode instructions `function` executes in this thread (C code counts as one call)."""
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            count += 1
        return trace

    function()  # warm caches (compiled templates, imports) so the count is the steady state
    sys.settrace(trace)
    try:
        function()
    finally:
        sys.settrace(None)
    return count


def test_rendering_a_pushed_card_stays_within_its_instruction_budget(alice):
    payment_request = make_request(Status.CLICKED, agent=alice)
    used = instructions(lambda: realtime.card_hint(payment_request))
    print(f"card render: {used:,} instructions (budget {CARD_RENDER_INSTRUCTIONS:,})")  # noqa: T201
    assert used <= CARD_RENDER_INSTRUCTIONS


def test_verifying_a_sandbox_webhook_stays_within_its_instruction_budget():
    body = sandbox_event(make_request(Status.CLICKED, gateway_reference="cs_sbx_count"))
    header = sandbox.sign(body)
    used = instructions(lambda: sandbox.verify(body, header))
    print(f"sandbox verify: {used:,} instructions (budget {SANDBOX_VERIFY_INSTRUCTIONS:,})")  # noqa: T201
    assert used <= SANDBOX_VERIFY_INSTRUCTIONS


def test_verifying_a_stripe_webhook_stays_within_its_instruction_budget(settings):
    settings.STRIPE_WEBHOOK_SECRET = ["whsec_new", "whsec_old"]
    event = {
        "id": "evt_count",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {"object": {"id": "cs_test_count", "object": "checkout.session", "payment_status": "paid"}},
    }
    body = json.dumps(event).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_old")  # the 2nd secret
    used = instructions(lambda: stripe_gateway.verify(body, header))
    print(f"stripe verify: {used:,} instructions (budget {STRIPE_VERIFY_INSTRUCTIONS:,})")  # noqa: T201
    assert used <= STRIPE_VERIFY_INSTRUCTIONS
