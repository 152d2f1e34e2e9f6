"""Bad input everywhere a person or a gateway can type: Hypothesis over every form and JSON body.

Amount strings, currencies with 0/2/3 decimals, phone formats, order numbers with markup, RTL characters,
10 kB strings and NUL bytes: the answer is a clear 4xx with a message (or a normal success), never a 500, and
a refused request writes nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from desk.models import Conversation, Customer, Message
from payments import lifecycle
from payments.gateways import sandbox
from payments.models import GatewayWebhookEvent, PaymentEvent, PaymentRequest
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import make_request
from tests.reliability import profile

pytestmark = pytest.mark.django_db
SECTION = "5. Bad input sweep (Hypothesis)"
EXAMPLES = profile.n(40, 1_000)
SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
NASTY = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "<script>alert(1)</script>",
        "{{ 7*7 }}",
        "{% csrf_token %}",
        "\u202eevil",
        "\u05e9\u05dc\u05d5\u05dd",
        "\u0661\u0662\u0663",
        "x" * 10_000,
        "' OR 1=1 --",
        "\ud7ff",
        "%00",
        "\u00a0",
        "١٢٠٫٥٠",
        "𝟏𝟐𝟎",
        "NaN",
        "Infinity",
        "-0",
        "1e3",
        "0x10",
        "1_000",
        "1,000.00",
        "+27 82 123 4567",
        "082 123 4567",
        "0027821234567",
        "+1 (202) 555-0143",
        "+999999999999999999",
    ]
)
TEXT = st.one_of(
    NASTY, st.text(max_size=60), st.text(min_size=4_000, max_size=10_000, alphabet="ab\u202e\x00")
)
AMOUNTS = st.one_of(
    NASTY,
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.builds(lambda whole, places: f"{whole}.{'5' * places}", st.integers(0, 10**7), st.integers(0, 5)),
)
CURRENCIES = st.one_of(
    st.sampled_from(["JPY", "ZAR", "KWD", "BHD", "CLP", "USD"]), NASTY, st.text(max_size=4)
)
STATS: dict[str, int] = {}


def tally(name: str, response) -> None:
    key = f"{name}: HTTP {response.status_code}"
    STATS[key] = STATS.get(key, 0) + 1


def counts() -> tuple:
    return (
        PaymentRequest.objects.count(),
        PaymentEvent.objects.count(),
        Message.objects.count(),
        Conversation.objects.count(),
        Customer.objects.count(),
        GatewayWebhookEvent.objects.count(),
    )


@pytest.fixture
def agent_browser(db):
    alice = AgentFactory(username="bad-alice")
    conversation = ConversationFactory(status="open", assigned_agent=alice)
    browser = Client()
    browser.force_login(alice)
    return browser, conversation


def test_the_chat_to_pay_form(agent_browser):
    browser, conversation = agent_browser

    @SETTINGS
    @given(
        amount=AMOUNTS,
        currency=CURRENCIES,
        phone=st.one_of(NASTY, TEXT),
        order=st.one_of(NASTY, TEXT),
        description=TEXT,
    )
    def attempt(amount, currency, phone, order, description):
        before = counts()
        response = browser.post(
            f"/desk/conversations/{conversation.pk}/chat2pay/",
            {
                "amount": amount,
                "currency": currency,
                "phone": phone,
                "order_number": order,
                "description": description,
                "idempotency_key": uuid.uuid4().hex,
            },
        )
        tally("Chat 2 Pay form", response)
        assert response.status_code in {200, 422}
        if response.status_code == 422:
            assert counts() == before  # nothing half-written
            assert 'class="errors"' in response.content.decode() or "field-error" in response.content.decode()
            return
        # Accepted: the amount was stored exactly, with the currency's decimals, and round-trips.
        created = PaymentRequest.objects.latest("pk")
        assert created.amount == Decimal(amount.strip())
        assert created.amount == lifecycle.quantize(created.amount, created.currency)
        assert "\x00" not in created.order_number + created.description
        assert counts()[0] == before[0] + 1

    attempt()


def test_the_chat_forms(db, settings):
    settings.RATELIMIT_CHAT_STARTS = "1000000/h"
    conversation = ConversationFactory(status="open", assigned_agent=AgentFactory(username="bad-bob"))
    agent = Client()
    agent.force_login(conversation.assigned_agent)

    @SETTINGS
    @given(name=TEXT, phone=st.one_of(NASTY, TEXT), body=TEXT, reply=TEXT, q=TEXT, status=TEXT, sort=TEXT)
    def attempt(name, phone, body, reply, q, status, sort):
        before = counts()
        response = Client().post("/chat/", {"name": name, "phone": phone, "body": body})
        tally("customer: start chat", response)
        assert response.status_code in {302, 422}
        if response.status_code == 422:
            assert counts() == before
        for who, response in [
            (
                "customer: message",
                Client().post(f"/chat/{conversation.customer_token}/messages/", {"body": reply}),
            ),
            (
                "agent: message",
                agent.post(f"/desk/conversations/{conversation.pk}/messages/", {"body": reply}),
            ),
        ]:
            tally(who, response)
            assert response.status_code in {200, 422}
        response = agent.get("/desk/conversations/", {"q": q, "status": status, "sort": sort})
        tally("agent: conversation filters", response)
        assert response.status_code == 200

    attempt()


def test_the_supervisor_filters_and_the_login_form(db, settings):
    from tests.factories import SupervisorFactory

    settings.RATELIMIT_LOGIN_FAILURES = "1000000/m"
    supervisor = Client()
    supervisor.force_login(SupervisorFactory(username="bad-sam"))
    fields = ["q", "status", "agent", "sent_from", "sent_to", "currency", "sort", "page", "min_amount"]

    @SETTINGS
    @given(values=st.lists(TEXT, min_size=len(fields), max_size=len(fields)), username=TEXT, password=TEXT)
    def attempt(values, username, password):
        query = dict(zip(fields, values, strict=True))
        for path in ["/supervisor/", "/supervisor/transactions/", "/supervisor/transactions/export.csv"]:
            response = supervisor.get(path, query)
            tally("supervisor: filters", response)
            assert response.status_code in {200, 400}
        response = Client().post("/accounts/login/", {"username": username, "password": password})
        tally("login form", response)
        assert response.status_code == 200

    attempt()


def test_the_card_form(db):
    from payments import actions

    payment_request = make_request("sent", token="bad-input-token-" + "x" * 27)
    actions.register_click(payment_request.pk)
    actions.open_checkout(PaymentRequest.objects.get(pk=payment_request.pk))
    browser = Client()

    @SETTINGS
    @given(
        card=st.one_of(NASTY, TEXT, st.from_regex(r"4[0-9]{15}", fullmatch=True)),
        expiry=st.one_of(NASTY, TEXT),
        cvc=st.one_of(NASTY, TEXT),
    )
    def attempt(card, expiry, cvc):
        before = counts()
        response = browser.post(
            f"/pay/bad-input-token-{'x' * 27}/payment/", {"card_number": card, "expiry": expiry, "cvc": cvc}
        )
        tally("customer: card form", response)
        assert response.status_code in {200, 422}
        if response.status_code == 422:
            assert counts() == before
            if card.isdigit() and len(card) >= 12:
                assert card not in response.content.decode()  # a card number is never echoed back

    attempt()


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def test_signed_gateway_bodies(db, settings):
    """JSON a gateway might send, validly signed: anything malformed is a 400, never a 500."""
    settings.CHAT2PAY_SANDBOX_WEBHOOK_SECRETS = ["bad-input-secret"]
    payment_request = make_request("clicked")

    @SETTINGS
    @given(
        event_id=st.one_of(TEXT, JSON_VALUES),
        kind=st.one_of(st.sampled_from(["payment.succeeded", "payment.failed"]), TEXT),
        amount=st.one_of(AMOUNTS, JSON_VALUES),
        currency=CURRENCIES,
        started=st.one_of(TEXT, st.just("2030-01-01T00:00:00+00:00")),
        reference=st.one_of(st.just(str(payment_request.pk)), TEXT, JSON_VALUES),
        extra=JSON_VALUES,
    )
    def attempt(event_id, kind, amount, currency, started, reference, extra):
        body = json.dumps(
            {
                "id": event_id,
                "type": kind,
                "created": int(time.time()),
                "extra": extra,
                "data": {
                    "client_reference": reference,
                    "payment": "pay_x",
                    "amount": amount,
                    "currency": currency,
                    "started_at": started,
                    "card": extra,
                },
            }
        ).encode()
        before = counts()
        response = Client().post(
            "/webhooks/sandbox/",
            body,
            content_type="application/json",
            headers={sandbox.SIGNATURE_HEADER: sandbox.sign(body)},
        )
        tally("sandbox webhook (signed)", response)
        assert response.status_code in {200, 400}
        if response.status_code == 400:
            assert counts() == before

    attempt()


def test_zz_report_the_bad_input_sweep():
    profile.record(SECTION, "examples per form", EXAMPLES)
    for name in sorted(STATS):
        profile.record(SECTION, name, STATS[name])
    assert not any("HTTP 5" in name for name in STATS)
