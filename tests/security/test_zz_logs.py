"""No card number, full link token or customer phone number in the logs of the whole run.

The capture (tests/reliability/profile.py) mirrors the console handler of settings.LOGGING, filters
included, from the first test of tests/reliability or tests/security on; this module's name sorts last, so
that it scans after the rest of both directories ran. It also drives the paths most likely to log a secret.
"""

from __future__ import annotations

import logging
import re

import pytest
from django.test import Client

from tests.payments.conftest import send, token_of
from tests.reliability import profile
from tests.security.test_authorization_matrix import world  # noqa: F401

pytestmark = pytest.mark.django_db
TOKEN_PATH = re.compile(r"/(?:ws/)?(?:pay|chat)/(?!stripe/)[A-Za-z0-9_\-]{20,}")
PHONE = re.compile(r"\+\d{8,15}\b")


def test_zz_no_secrets_in_the_logs_of_the_run(world, caplog):  # noqa: F811
    # Given requests that Django logs with their path: 404/410 on a pay page, a refused chat, a bad card
    token = world["pay_token"]
    Client().get(f"/pay/{token}x/")
    Client().get(f"/chat/{world['chat_token']}/nope/")
    Client().post(
        f"/pay/{token}/payment/", {"card_number": "4242 4242 4242 4242", "expiry": "1/1", "cvc": "1"}
    )
    canceled = send(world["conversation"], world["users"]["agent"])
    from payments import actions

    actions.cancel_payment_request(canceled.pk, agent=world["users"]["agent"])
    Client().get(f"/pay/{token_of(canceled)}/")  # 410 Gone: logged with its path
    logging.getLogger("payments").warning("customer %s wrote", world["conversation"].customer.phone)

    lines = profile.captured_log_lines()
    text = "\n".join(lines)
    assert len(lines) > 10  # the capture is on
    assert [line for line in lines if profile.card_numbers_in(line)] == []
    assert TOKEN_PATH.findall(text) == []
    leaked = [secret for secret in profile.issued_secrets | {world["chat_token"]} if secret in text]
    assert leaked == []
    assert PHONE.findall(text) == []
    profile.record(
        "4. Security: logs", "log lines scanned (whole run of tests/reliability + tests/security)", len(lines)
    )
    profile.record("4. Security: logs", "card numbers / full tokens / phone numbers found", "0 / 0 / 0")


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("card 4242 4242 4242 4242 declined", ["4242424242424242"]),
        ("pan=4000-0000-0000-0002", ["4000000000000002"]),
        ("Task x[4fc9201a-6903-4ad0-9358-470245013e94] succeeded in 0.016038582998589845s", []),  # a UUID
        ("amount 1234567890123.456", []),  # a decimal fraction
        ("4444444444444444", []),  # one digit repeated: a placeholder, not a card
    ],
)
def test_the_log_scan_finds_card_numbers_and_not_ids_or_amounts(line, found):
    assert profile.card_numbers_in(line) == found
