"""The expiry sweep: beat runs it every second; it expires each due request exactly once and pushes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.utils import timezone

from payments import actions, tasks
from payments.lifecycle import Reason, Status
from payments.models import PaymentEvent, SandboxCheckout
from tests.payments.conftest import make_request, reload, send

pytestmark = pytest.mark.django_db


def test_beat_runs_the_sweep_twice_a_second():
    entry = settings.CELERY_BEAT_SCHEDULE["chat2pay-expire-due-requests"]
    assert entry["task"] == "payments.tasks.expire_due_payment_requests_task"
    assert entry["schedule"] == settings.CHAT2PAY_SWEEP_INTERVAL_SECONDS == 0.5
    assert entry["options"]["expires"] >= 5  # sweeps queued while no worker ran are dropped, not piled up


def test_the_sweep_expires_exactly_the_due_requests(alice):
    now = timezone.now()
    due_sent = make_request(Status.SENT, agent=alice, click_deadline=now)  # exactly at its deadline
    due_clicked = make_request(Status.CLICKED, agent=alice, pay_deadline=now - timedelta(seconds=1))
    not_yet = make_request(Status.SENT, agent=alice, click_deadline=now + timedelta(seconds=1))
    clicked_in_time = make_request(Status.CLICKED, agent=alice, click_deadline=now - timedelta(minutes=1))
    closed = [
        make_request(status, agent=alice, click_deadline=now - timedelta(hours=1))
        for status in ("paid", "canceled", "failed")
    ]

    with time_machine.travel(now, tick=False):
        assert tasks.expire_due_payment_requests_task.apply().get() == 2

    assert (reload(due_sent).status, reload(due_clicked).status) == (Status.EXPIRED, Status.EXPIRED)
    assert (reload(not_yet).status, reload(clicked_in_time).status) == (Status.SENT, Status.CLICKED)
    assert [reload(pr).status for pr in closed] == ["paid", "canceled", "failed"]
    # Each expired row is a new version, closed at the sweep's instant, with its own history row and reason
    for before, reason in [
        (due_sent, Reason.CLICK_WINDOW_PASSED),
        (due_clicked, Reason.PAY_WINDOW_PASSED),
    ]:
        after = reload(before)
        assert (after.version, after.closed_at, after.updated_at) == (before.version + 1, now, now)
        event = after.events.get()
        assert (event.from_status, event.to_status, event.reason, event.actor_kind, event.at) == (
            before.status,
            Status.EXPIRED,
            reason,
            "system",
            now,
        )


def test_a_second_sweep_finds_nothing_to_do(alice):
    make_request(Status.SENT, agent=alice, click_deadline=timezone.now() - timedelta(seconds=1))
    assert actions.expire_due_payment_requests() == 1
    assert actions.expire_due_payment_requests() == 0
    assert PaymentEvent.objects.filter(to_status=Status.EXPIRED).count() == 1


def test_the_sweep_works_in_batches_and_publishes_each_batch_after_commit(
    alice, django_capture_on_commit_callbacks
):
    past = timezone.now() - timedelta(seconds=1)
    for _ in range(5):
        make_request(Status.SENT, agent=alice, click_deadline=past)
    with django_capture_on_commit_callbacks() as callbacks:
        assert actions.expire_due_payment_requests(batch_size=2) == 5
    assert len(callbacks) == 3  # batches of 2, 2 and 1: one publish hook each


def test_an_expired_clicked_request_closes_its_gateway_checkout(
    alice, alices_conversation, celery_eager, django_capture_on_commit_callbacks
):
    payment_request = send(alices_conversation, alice)
    actions.register_click(payment_request.pk)
    actions.open_checkout(reload(payment_request))
    with time_machine.travel(reload(payment_request).pay_deadline, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            actions.expire_due_payment_requests()
    assert reload(payment_request).status == Status.EXPIRED
    assert SandboxCheckout.objects.get().state == SandboxCheckout.State.EXPIRED


def test_the_sweeps_queries_can_use_the_partial_deadline_indexes(alice):
    make_request(Status.SENT, agent=alice)
    with connection.cursor() as cursor:
        # Sequential scans and sorts priced out: on a tiny table the planner's choice among the indexes is a
        # coin toss (the embedded PostgreSQL picked the live-order index), but only a deadline index gives the
        # rows in the sweep's order.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        plans = []
        for status, column in (("sent", "click_deadline"), ("clicked", "pay_deadline")):
            cursor.execute(
                f"EXPLAIN SELECT id FROM payments_paymentrequest WHERE status = %s AND {column} <= now()"
                f" ORDER BY {column} LIMIT 500 FOR NO KEY UPDATE SKIP LOCKED",
                [status],
            )
            plans.append(" ".join(row[0] for row in cursor.fetchall()))
    assert "payments_pr_sent_due" in plans[0]
    assert "payments_pr_clicked_due" in plans[1]


@pytest.mark.django_db(transaction=True)
def test_the_documented_lateness_command_measures_the_sweeps_pushes(alice, monkeypatch):
    """docs/chat2pay.md's reproduce command, small: it must hear the sweep's batch pushes, as a tab does."""
    import io
    import threading

    from django.core.management import call_command
    from django.db import connections

    from payments.management.commands import measure_expiry_lateness

    monkeypatch.setattr(measure_expiry_lateness, "LEAD_SECONDS", 1)
    stop = threading.Event()

    def beat() -> None:  # the worker and beat that --no-spawn expects to be running already
        try:
            while not stop.wait(0.25):
                actions.expire_due_payment_requests()
        finally:
            connections.close_all()

    sweeper = threading.Thread(target=beat)
    sweeper.start()
    out = io.StringIO()
    try:
        call_command(
            "measure_expiry_lateness", open=5, background=3, spread=1, no_spawn=True, timeout=20, force=True,
            stdout=out,
        )  # fmt: skip
    finally:
        stop.set()
        sweeper.join()
    report = out.getvalue()
    assert "Expired: 5 of 5 stored, 5 pushed." in report
    assert "push (deadline -> desk): median" in report
