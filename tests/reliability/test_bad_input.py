"""Bad input everywhere a person or a gateway can type: Hypothesis over every form and JSON body.

Amount strings, currencies with 0/2/3 decimals, phone formats, order numbers with markup, RTL characters,
10 kB strings and NUL bytes: the answer is a clear 4xx with a message (or a normal success), never a 500, and
a refused request writes nothing. Where a payment request is created (the Chat 2 Pay form, the integrations
API), valid input is generated as well, alone and with exactly one field broken: valid input creates exactly
one request holding what was typed, and the broken field is named in the 4xx.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
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

# 1,000 examples of a form take minutes in the long profile (pytest-timeout's default is 5 minutes a test).
pytestmark = [pytest.mark.django_db, pytest.mark.timeout(profile.n(300, 2400))]
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


# --- Valid Chat 2 Pay input, and valid input with exactly one field broken ----------------------------------

ORDER_CHARACTERS = "ABCXYZabz0189-_./#: \u05e9\u05dc\u05d5\u05dd\u0627\u0644\u0639"  # Hebrew, Arabic letters
_order_numbers = itertools.count(1)
VALID_PHONES = st.one_of(
    st.sampled_from(
        [
            "+27 82 123 4567",
            "082 123 4567",
            "0027821234567",
            "+1 (202) 555-0143",
            "+44 7911 123456",
            "+965 5012 3456",
            "+\u0662\u0667\u0668\u0662\u0661\u0662\u0663\u0664\u0665\u0666\u0667",  # Arabic-Indic digits
        ]
    ),
    st.integers(0, 9_999_999).map(lambda number: f"+2782{number:07d}"),
    st.integers(0, 9_999_999).map(lambda number: f"082 {number // 10_000:03d} {number % 10_000:04d}"),
)


@st.composite
def valid_amounts(draw, currency: str) -> str:
    """An amount the form must accept: positive, at most the limit, at most the currency's decimals."""
    places = lifecycle.MINOR_UNITS[currency]
    smallest, largest = Decimal(1).scaleb(-places), django_settings.CHAT2PAY_MAX_AMOUNT
    amount = draw(st.decimals(min_value=smallest, max_value=largest, places=places))
    text = f"{amount:f}"
    if "." in text and draw(st.booleans()):
        text = text.rstrip("0").rstrip(".")  # "120.5" and "120" are as good as "120.50"
    return draw(st.sampled_from(["", " "])) + text + draw(st.sampled_from(["", " "]))


@st.composite
def valid_send_inputs(draw) -> dict:
    currency = draw(st.sampled_from(["JPY", "CLP", "ZAR", "USD", "EUR", "KWD", "BHD", "OMR"]))
    order = draw(st.text(alphabet=ORDER_CHARACTERS, max_size=30))
    return {
        "amount": draw(valid_amounts(currency)),
        "currency": currency,
        "phone": draw(VALID_PHONES),
        # Unique, so that no order already has a live request (a refusal the live-order tests cover)
        "order_number": f"{order}#{next(_order_numbers)}",
        "description": draw(
            st.one_of(
                st.sampled_from(
                    ["", "<script>alert(1)</script>", "{{ 7*7 }}", "\u202eevil", "\u05e9\u05dc\u05d5\u05dd"]
                ),
                st.text(max_size=200).filter(lambda text: "\x00" not in text and len(text.strip()) <= 200),
            )
        ),
    }


def broken_values(field: str, valid: dict) -> list[str]:
    """Values of `field` the form must refuse, whatever the other fields hold."""
    places = lifecycle.MINOR_UNITS[valid["currency"]]
    return {
        "amount": [
            "", " ", "0", "0.00", "-5", "-0", "1e3", "NaN", "Infinity", "1,000.00", "1_000", "0x10", "12.3.4",
            "<script>alert(1)</script>", "\x00", "1\x00", "x" * 10_000, "9" * 16, "1000000.5",
            "1." + "5" * (places + 1), "\u202e120",
        ],
        "currency": ["", "XXX", "zar", "ZA", "ZARR", "\x00", "<b>", "x" * 10_000, "\u202eZAR"],
        "phone": [
            "", "123", "+999999999999999999", "<script>alert(1)</script>", "x" * 10_000, "\x00",
            "+27 82 123\x00 4567", "{{ 7*7 }}", "not a phone",
        ],
        "order_number": [
            "", " ", "<script>alert(1)</script>", "{{ 7*7 }}", "{% csrf_token %}", "A\x00B", "x" * 41,
            "x" * 10_000, "\u202eevil", "O'Brien;--", "A<b>1</b>",
        ],
        "description": ["x" * 201, "a\x00b", "y" * 10_000],
    }[field]  # fmt: skip


@st.composite
def broken_send_inputs(draw) -> tuple[dict, str]:
    """A valid input with one field replaced by a value the form must refuse; returns (input, field)."""
    valid = draw(valid_send_inputs())
    field = draw(st.sampled_from(["amount", "currency", "phone", "order_number", "description"]))
    return {**valid, field: draw(st.sampled_from(broken_values(field, valid)))}, field


RANDOM_SEND_INPUTS = st.fixed_dictionaries(
    {
        "amount": AMOUNTS,
        "currency": CURRENCIES,
        "phone": st.one_of(NASTY, TEXT),
        "order_number": st.one_of(NASTY, TEXT),
        "description": TEXT,
    }
)
SEND_CASES = st.one_of(
    valid_send_inputs().map(lambda fields: ("valid", fields, None)),
    broken_send_inputs().map(lambda broken: ("one field broken", broken[0], broken[1])),
    RANDOM_SEND_INPUTS.map(lambda fields: ("random", fields, None)),
)


def assert_stored_as_typed(created: PaymentRequest, fields: dict) -> None:
    """An accepted request holds exactly what was typed: the amount round-trips, texts are cleaned only."""
    assert created.amount == Decimal(fields["amount"].strip())
    assert created.amount == lifecycle.quantize(created.amount, created.currency)
    assert created.currency == fields["currency"]
    assert created.order_number == fields["order_number"].strip()
    assert re.fullmatch(r"\+[0-9]{8,15}", created.phone)  # E.164, whatever digits were typed
    assert "\x00" not in created.order_number + created.description
    assert all(char.isprintable() for char in created.description)


def test_the_chat_to_pay_form(agent_browser):
    """Valid input creates exactly one request; a bad field is a 422 that names it and writes nothing."""
    browser, conversation = agent_browser

    @SETTINGS
    @given(case=SEND_CASES)
    def attempt(case):
        kind, fields, broken_field = case
        before = counts()
        response = browser.post(
            f"/desk/conversations/{conversation.pk}/chat2pay/",
            {**fields, "idempotency_key": uuid.uuid4().hex},
        )
        tally(f"Chat 2 Pay form ({kind})", response)
        page = response.content.decode()
        if kind == "valid":
            assert response.status_code == 200, page
        elif kind == "one field broken":
            assert response.status_code == 422
            assert f'id="chat2pay-{broken_field}_error" class="field-error"' in page
        assert response.status_code in {200, 422}
        if response.status_code == 422:
            assert counts() == before  # nothing half-written
            assert 'class="errors"' in page or "field-error" in page
            return
        assert counts()[0] == before[0] + 1  # exactly one request
        assert_stored_as_typed(PaymentRequest.objects.latest("pk"), fields)

    attempt()


API_FIELDS = ["conversation_id", "agent_id", "amount", "currency", "order_number", "description", "phone"]


@st.composite
def api_cases(draw, conversation_id: int, agent_id: int, other_user_id: int):
    """(kind, body bytes, broken field or None, valid fields or None) for POST /api/v1/payment-requests."""
    valid = draw(valid_send_inputs())
    fields = {"conversation_id": conversation_id, "agent_id": agent_id, **valid}
    if draw(st.booleans()):
        fields["phone"] = None  # the conversation's customer's
    if fields["currency"] == django_settings.CHAT2PAY_DEFAULT_CURRENCY and draw(st.booleans()):
        fields["currency"] = None  # the deployment's (an amount with 3 decimals would not fit ZAR)
    kind = draw(st.sampled_from(["valid", "one field broken", "random JSON", "not JSON"]))
    if kind == "valid":
        return kind, json.dumps(fields).encode(), None, fields
    if kind == "one field broken":
        field = draw(st.sampled_from(API_FIELDS))
        wrong_types = [None, 120.5, 120, True, [], {}, ["120.50"]]  # the schema wants strings
        values = {
            "conversation_id": [0, -1, 2**63, 2**64, 987_654_321, "x", None, 1.5, []],
            "agent_id": [0, -1, 2**64, 987_654_321, other_user_id, "x", None],
            # null or "" take the deployment's currency (api/v1.py `_validated`), so neither is broken
            "currency": [*(v for v in broken_values("currency", valid) if v), 3, [], {}],
            "phone": [*broken_values("phone", valid), 27821234567, []],  # null: the chat's, so valid
        }.get(field) or [*broken_values(field, valid), *wrong_types]
        fields[field] = draw(st.sampled_from(values))
        return kind, json.dumps(fields).encode(), field, None
    if kind == "random JSON":
        body = draw(st.one_of(JSON_VALUES, st.dictionaries(st.sampled_from(API_FIELDS), JSON_VALUES)))
        return kind, json.dumps(body).encode(), None, None
    raw = draw(st.one_of(st.binary(max_size=200), TEXT.map(lambda text: text.encode())))
    return kind, raw, None, None


def test_the_api_json_bodies(db, settings):
    """POST /api/v1/payment-requests with a write key: a valid body creates exactly one request (201); any
    other is a 4xx JSON error with a code and a message that writes nothing; never a 500."""
    from api import keys
    from tests.factories import UserFactory

    settings.API_RATE_LIMIT_PER_MINUTE = 10**9
    agent = AgentFactory(username="bad-api-alice")
    conversation = ConversationFactory(status="open", assigned_agent=agent)
    not_an_agent = UserFactory(username="bad-api-mallory")
    api = Client(headers={"Authorization": f"Bearer {keys.create_api_key(name='OMS', scope='write')[1]}"})

    @SETTINGS
    @given(
        case=api_cases(conversation.pk, agent.pk, not_an_agent.pk),
        idempotency_key=st.sampled_from(["none", "too long", "fresh"]),
    )
    def attempt(case, idempotency_key):
        kind, body, broken_field, fields = case
        before = counts()
        headers = {
            "none": {},
            "too long": {"Idempotency-Key": "k" * 256},  # over the documented 255: a 422 of its own
            "fresh": {"Idempotency-Key": uuid.uuid4().hex},
        }[idempotency_key]
        response = api.post(
            "/api/v1/payment-requests", body, content_type="application/json", headers=headers
        )
        tally(f"API: create payment request ({kind})", response)
        answer = json.loads(response.content)
        if kind == "valid" and idempotency_key != "too long":
            assert response.status_code == 201, answer
        if response.status_code == 201:
            assert fields is not None or kind == "random JSON"
            assert counts()[0] == before[0] + 1  # exactly one request
            created = PaymentRequest.objects.get(pk=answer["id"])
            if fields is not None:
                assert_stored_as_typed(created, {**fields, "currency": created.currency})
            assert answer["amount"] == str(lifecycle.quantize(created.amount, created.currency))
            return
        assert 400 <= response.status_code < 500, answer
        assert counts() == before  # nothing half-written
        assert answer["code"]
        assert answer["message"]
        if broken_field and answer["code"] == "validation_error" and idempotency_key != "too long":
            assert broken_field in answer["errors"], answer

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
            # A card number is never echoed back (the expiry and code the customer typed may be; Hypothesis
            # sometimes types the same digits into all three).
            if card.isdigit() and len(card) >= 12 and card not in expiry + cvc:
                assert card not in response.content.decode()

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
