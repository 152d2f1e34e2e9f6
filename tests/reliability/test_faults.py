"""Fault injection with real processes (issue 6, point 3; scenarios C4 32-38 of the reliability catalogue).

Daphne, a Celery worker and beat run as in production against the test database and a Redis server of their
own (tests/reliability/live_stack.py). The tests break them for real: a worker SIGKILLs itself at a named
point (tests/reliability/fault_points.py) and a new one starts; the Redis server is SIGKILLed and started
again on its port while agents' pages are connected and requests change; Daphne is SIGKILLed and started
again under connected pages; beat stops for longer than a window. Afterwards, checked against PostgreSQL:

- no transition is lost, and none is applied twice (one history row per change);
- no request is still open past its deadline by more than one sweep interval after the fault ends;
- every connected desk page shows what the database says, and the time it took is a figure.

Pages are websocket clients that behave like static/desk/realtime.js (reconnect with backoff, ping every 25 s,
keep the higher data-version of a card). The quick profile (make test) takes about 90 s on two cores.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.db import OperationalError
from django.test import TransactionTestCase
from django.utils import timezone

from payments import actions
from payments.gateways.base import PaymentOutcome
from payments.gateways.sandbox import SandboxCardForm, SandboxGateway
from payments.lifecycle import Status
from payments.models import PaymentEvent, PaymentRequest, SandboxCheckout
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import make_request
from tests.reliability import profile
from tests.reliability.fault_points import POINTS
from tests.reliability.live_stack import (
    PING_SECONDS,
    DeskSocket,
    LiveStack,
    database_cards,
    kill,
    session_cookie,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)
SECTION = "3. Fault injection with real processes"
SWEEP_SECONDS = 1.0  # CHAT2PAY_SWEEP_INTERVAL_SECONDS of the live processes
# A sweep that beat queues at t runs in the worker a little later on a loaded 2-core machine: "within one
# sweep interval" is checked with this much scheduling slack on top.
SLACK_SECONDS = 1.0
OUTAGE_SECONDS = 3.0  # how long the Redis server stays down
# A page that lost its socket reconnects with backoff (0.5 s doubling to 15 s) and a page whose pushes were
# lost converges at its next ping (every 25 s): no page may take longer than both together.
CONVERGE_TIMEOUT = PING_SECONDS + 15 + 5


@pytest.fixture(scope="module")
def stack(django_db_setup, tmp_path_factory) -> Iterator[LiveStack]:
    live = LiveStack(
        tmp_path_factory.mktemp("faults"), {"CHAT2PAY_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS)}
    )
    try:
        live.start()
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module", autouse=True)
def reset_retries_a_deadlock() -> Iterator[None]:
    """The live worker sweeps every second, between tests too. The TRUNCATE that resets the database after
    each test can deadlock with a sweep (each holds a lock the other waits for), and PostgreSQL then cancels
    one of them: the next beat tick retries the sweep, and this retries the reset."""
    reset = TransactionTestCase._fixture_teardown

    def reset_with_retries(self) -> None:
        for attempt in range(5):
            try:
                return reset(self)
            except CommandError as error:
                cause = error.__cause__
                if not (isinstance(cause, OperationalError) and "deadlock" in str(cause)) or attempt == 4:
                    raise
                time.sleep(0.2)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", reset_with_retries)
        yield


@pytest.fixture
def pushes_to_private_redis(settings, stack):
    """This test process's transitions push through the stack's Redis, like Daphne's and the worker's."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"][0]["address"] = stack.redis.url
    settings.CHANNEL_LAYERS = layers


@contextlib.contextmanager
def push_failures_expected():
    """While Redis is down every push fails, and Django logs each failed on-commit hook with its traceback."""
    logger = logging.getLogger("django.db.backends.base")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def desks(count: int, requests_each: int, **fields) -> list[tuple[object, object, list[PaymentRequest]]]:
    """`count` agents, each with an open conversation holding `requests_each` requests."""
    made = []
    for _ in range(count):
        agent = AgentFactory()
        conversation = ConversationFactory(status="open", assigned_agent=agent)
        requests = [
            make_request(agent=agent, conversation=conversation, **fields) for _ in range(requests_each)
        ]
        made.append((agent, conversation, requests))
    return made


def open_pages(stack: LiveStack, made) -> list[DeskSocket]:
    pages = [
        DeskSocket(stack.daphne.url, conversation.pk, session_cookie(agent))
        for agent, conversation, _ in made
    ]
    for page, (_, _, requests) in zip(pages, made, strict=True):
        if wait_until(lambda p=page, r=requests: p.has([pr.pk for pr in r]), 15) is None:
            close_pages(pages)
            raise AssertionError(f"a page never showed its cards ({page.closes}):\n{stack.log_tails()}")
    return pages


def close_pages(pages: list[DeskSocket]) -> None:
    for page in pages:
        page.close()


def time_to_converge(pages: list[DeskSocket], made, timeout: float = CONVERGE_TIMEOUT) -> float | None:
    """Seconds until every page shows what the database says about each of its requests."""
    ids = [[pr.pk for pr in requests] for _, _, requests in made]
    return wait_until(
        lambda: all(page.shows(database_cards(pks)) for page, pks in zip(pages, ids, strict=True)),
        timeout,
        0.1,
    )


def expiries(ids) -> dict[int, int]:
    counts = dict.fromkeys(ids, 0)
    for pk in PaymentEvent.objects.filter(payment_request__in=ids, to_status=Status.EXPIRED).values_list(
        "payment_request", flat=True
    ):
        counts[pk] += 1
    return counts


def all_expired(ids) -> bool:
    return not PaymentRequest.objects.filter(pk__in=ids).exclude(status=Status.EXPIRED).exists()


def lateness(requests: list[PaymentRequest], since) -> float:
    """The largest delay between a request's deadline (or `since`, if later) and its expiry, in seconds."""
    worst = 0.0
    for pr in PaymentRequest.objects.filter(pk__in=[r.pk for r in requests]):
        deadline = pr.pay_deadline if pr.clicked_at else pr.click_deadline
        worst = max(worst, (pr.closed_at - max(deadline, since)).total_seconds())
    return worst


# --- kill -9 of the worker at named points ------------------------------------------------------------------


def pay_at_the_sandbox(payment_request_id: int) -> str:
    """What the sandbox answers a customer who submits a good card on this request's checkout now."""
    form = SandboxCardForm({"card_number": "4242 4242 4242 4242", "expiry": "12/39", "cvc": "123"})
    assert form.is_valid(), form.errors
    reference = PaymentRequest.objects.get(pk=payment_request_id).gateway_reference
    return SandboxGateway().start_payment(reference, form, site_url="http://127.0.0.1/").outcome


def _requests_for(point: str, count: int):
    """One agent's conversation with `count` open requests: sent ones for the sweep's points, clicked ones
    with a sandbox checkout for the gateway's. Their deadlines are far off until `fall_due` moves them."""
    if not point.startswith("gateway-"):
        return desks(1, count)
    made = desks(1, count, status=Status.CLICKED)
    for pr in made[0][2]:
        pr.gateway_reference = f"cs_sbx_fault_{pr.pk}"
        pr.save(update_fields=["gateway_reference"])
        SandboxCheckout.objects.create(
            reference=pr.gateway_reference,
            client_reference=str(pr.pk),
            amount=pr.amount,
            currency=pr.currency,
            expires_at=pr.pay_deadline,
        )
    return made


def fall_due(ids, seconds: float) -> None:
    """Move the running deadline of these requests (and of their checkouts) to `seconds` from now."""
    deadline = timezone.now() + timedelta(seconds=seconds)
    PaymentRequest.objects.filter(pk__in=ids, status=Status.SENT).update(click_deadline=deadline)
    PaymentRequest.objects.filter(pk__in=ids, status=Status.CLICKED).update(pay_deadline=deadline)
    SandboxCheckout.objects.filter(client_reference__in=[str(pk) for pk in ids]).update(expires_at=deadline)


# The quick profile breaks the worker where a loss would show (the pushes of a committed sweep, the gateway
# call), the long one at every point.
QUICK_POINTS = ("sweep-after-commit-before-push", "gateway-before-call")


@pytest.mark.parametrize("point", POINTS if profile.LONG else QUICK_POINTS)
def test_a_worker_killed_at_a_named_point_loses_no_expiry(stack, point):
    count = profile.n(8, 100)
    made = _requests_for(point, count)
    requests = made[0][2]
    ids = [pr.pk for pr in requests]
    pages = open_pages(stack, made)  # the agent's page is open, its cards live
    try:
        stack.worker.stop()
        faulty = stack.start_worker(point)
        fall_due(ids, 0.5)
        # When the worker reaches the point (the first batch of due requests, or the first checkout to close)
        died = wait_until(lambda: not faulty.running, 15)
        assert died is not None, f"the worker never reached {point}:\n{stack.log_tails()}"
        assert faulty.process.returncode == -9
        # and a new worker starts
        stack.start_worker()
        recovered_at = timezone.now()
        expired_in = wait_until(lambda: all_expired(ids), 15)
        converged_in = time_to_converge(pages, made)
    finally:
        close_pages(pages)

    # Then every request is expired exactly once, within one sweep interval of the later of its deadline and
    # the new worker, and the agent's page shows it
    assert expired_in is not None, stack.log_tails()
    assert set(expiries(ids).values()) == {1}
    worst = lateness(requests, recovered_at)
    assert worst <= SWEEP_SECONDS + SLACK_SECONDS
    assert converged_in is not None, f"{pages[0].cards} vs {database_cards(ids)}"
    pushes = [pages[0].pushes[pk, Status.EXPIRED] for pk in ids]
    assert max(pushes) <= 1  # never a duplicate card update
    if point != "sweep-after-commit-before-push":
        assert min(pushes) == 1
    resyncs = sum(1 for pk in ids if pages[0].resyncs[pk, Status.EXPIRED])
    if point.startswith("gateway-"):
        # and the gateway takes no more money for any of them. Closing the checkout at the gateway is the
        # second line: the task killed before its call is gone (acknowledged when it started, as Celery does
        # by default); the sandbox refuses a checkout past its expiry by itself, and Stripe's reconciler
        # closes a session left open (payments.stripe_inbox.settle_checkout).
        refused = [pay_at_the_sandbox(pk) for pk in ids]
        assert set(refused) == {PaymentOutcome.CLOSED}
        assert wait_until(stack.queue_is_empty, 30) is not None  # the new worker ran what reached it
        time.sleep(1.0)  # (including the last few it had prefetched)
        left_open = SandboxCheckout.objects.filter(
            client_reference__in=[str(pk) for pk in ids], state=SandboxCheckout.State.OPEN
        ).count()
        profile.record(
            SECTION,
            f"worker kill -9 at {point}: checkouts not closed by our call / payments the gateway took after",
            f"{left_open} / 0",
        )
    profile.record(SECTION, f"worker kill -9 at {point}: requests due", count)
    profile.record(
        SECTION,
        f"worker kill -9 at {point}: expired once / expiry pushes / cards made good by the page's ping",
        f"{sum(1 for n in expiries(ids).values() if n == 1)} / {sum(pushes)} / {resyncs}",
    )
    profile.record(
        SECTION,
        f"worker kill -9 at {point}: worst expiry after max(deadline, new worker ready)",
        f"{worst:.2f} s",
    )
    profile.record(SECTION, f"worker kill -9 at {point}: page converged after", f"{converged_in:.2f} s")


# --- Redis restarted under load -----------------------------------------------------------------------------


def test_redis_restart_under_load_loses_no_transition(stack, pushes_to_private_redis):
    agents, each = profile.n(4, 20), profile.n(4, 10)
    made = desks(agents, each)
    due = [pr.pk for _, _, requests in made for pr in requests[: each // 4 or 1]]
    changing = [(agent, pr) for agent, _, requests in made for pr in requests[each // 4 or 1 :]]
    pages = open_pages(stack, made)
    applied: list[tuple[int, str]] = []

    def change(index: int, agent, pr) -> None:
        result = (
            actions.cancel_payment_request(pr.pk, agent=agent) if index % 2 else actions.register_click(pr.pk)
        )
        assert result.ok
        applied.append((pr.pk, Status.CANCELED if index % 2 else Status.CLICKED))

    try:
        half = len(changing) // 2
        for index, (agent, pr) in enumerate(changing[: half // 2]):  # load before the fault
            change(index, agent, pr)
        # When the Redis server dies (channel layer, broker and cache at once) while requests keep changing
        with push_failures_expected():
            stack.redis.kill()
            killed = time.monotonic()
            fall_due(due, 0.5)  # some requests fall due while the broker is gone
            for index, (agent, pr) in enumerate(changing[half // 2 : half], start=half // 2):
                change(index, agent, pr)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - killed)))
            stack.redis.start()
        down_for = time.monotonic() - killed
        for index, (agent, pr) in enumerate(changing[half:], start=half):  # and after it is back
            change(index, agent, pr)
        expired_in = wait_until(lambda: all_expired(due), 20)
        converged_in = time_to_converge(pages, made)
        reconnects = sum(page.connects - 1 for page in pages)
    finally:
        close_pages(pages)

    # Then PostgreSQL has every transition exactly once, the due requests expired soon after Redis returned,
    assert expired_in is not None, stack.log_tails()
    for pk, status in applied:
        assert PaymentEvent.objects.filter(payment_request=pk, to_status=status).count() == 1
        assert PaymentRequest.objects.get(pk=pk).status == status
    assert set(expiries(due).values()) == {1}
    # and every page converged to the database
    assert converged_in is not None, [(page.cards, page.closes) for page in pages]
    profile.record(SECTION, "Redis SIGKILL + restart: pages / requests", f"{agents} / {agents * each}")
    profile.record(
        SECTION,
        "Redis SIGKILL + restart: transitions (during outage) / lost / expired after return",
        f"{len(applied)} ({half - half // 2}) / 0 / {len(due)} in {expired_in:.2f} s",
    )
    profile.record(
        SECTION, "Redis SIGKILL + restart: down for / page reconnects", f"{down_for:.1f} s / {reconnects}"
    )
    profile.record(
        SECTION, "Redis SIGKILL + restart: all pages converged after Redis returned", f"{converged_in:.2f} s"
    )


# --- Daphne restarted with agents connected -----------------------------------------------------------------


def test_daphne_restart_pages_reconnect_and_resync(stack, pushes_to_private_redis):
    agents, each = profile.n(4, 20), profile.n(3, 5)
    made = desks(agents, each)
    pages = open_pages(stack, made)
    try:
        # When Daphne is killed under connected pages and requests change while it is away
        kill(stack.daphne)
        for agent, _, requests in made:
            actions.cancel_payment_request(requests[0].pk, agent=agent)
            actions.register_click(requests[-1].pk)
        stack.daphne.start()
        converged_in = time_to_converge(pages, made)
        reconnects = sum(page.connects - 1 for page in pages)
    finally:
        close_pages(pages)

    # Then every page reconnected and shows the database
    assert converged_in is not None, [page.cards for page in pages]
    assert reconnects >= agents
    profile.record(
        SECTION, "Daphne kill -9 + restart: pages / changes while it was down", f"{agents} / {2 * agents}"
    )
    profile.record(
        SECTION,
        "Daphne kill -9 + restart: all pages reconnected and converged after",
        f"{converged_in:.2f} s",
    )


# --- beat stopped for longer than a window ------------------------------------------------------------------


def test_beat_down_longer_than_a_window_then_everything_overdue_expires_once(stack):
    count = profile.n(20, 300)
    stack.beat.stop()
    try:
        window = 1.0
        made = desks(2, count // 2, click_deadline=timezone.now() + timedelta(seconds=window))
        ids = [pr.pk for _, _, requests in made for pr in requests]
        pages = open_pages(stack, made)
        # When beat stays away for longer than the window
        time.sleep(window + 1.5)
        assert PaymentRequest.objects.filter(pk__in=ids, status=Status.SENT).count() == count  # nothing swept
        # (read-time enforcement: no overdue request can be clicked or canceled meanwhile)
        assert actions.register_click(ids[0]).refusal is not None
    finally:
        stack.start_beat()
    back_at = timezone.now()
    try:
        expired_in = wait_until(lambda: all_expired(ids), 15)
        converged_in = time_to_converge(pages, made)
    finally:
        close_pages(pages)

    # Then everything overdue is expired within one sweep interval of beat's return, once, with one push each
    assert expired_in is not None, stack.log_tails()
    assert set(expiries(ids).values()) == {1}
    worst = lateness([pr for _, _, requests in made for pr in requests], back_at)
    assert worst <= SWEEP_SECONDS + SLACK_SECONDS
    assert converged_in is not None
    pushes = [
        page.pushes[pk, Status.EXPIRED]
        for page, (_, _, requests) in zip(pages, made, strict=True)
        for pk in (pr.pk for pr in requests)
    ]
    assert max(pushes) == 1
    profile.record(SECTION, "beat down for longer than the 1 s window: overdue requests", count)
    profile.record(
        SECTION,
        "beat down: expired once / pushes / worst delay after beat's return",
        f"{count} / {sum(pushes)} / {worst:.2f} s",
    )
    profile.record(SECTION, "beat down: pages converged after beat's return", f"{converged_in:.2f} s")
