"""The worker's and beat's log: the frequent sweeps' "nothing to do" lines are left out, everything else kept.

Each line goes through Celery's own logging call (its tracer runs the real sweep task) into the console
handler that settings.LOGGING configures, so the test reads what an operator would read.
"""

import io
import logging
import uuid
from datetime import timedelta

import pytest
from celery.app.trace import LOG_RECEIVED, build_tracer
from django.utils import timezone

from chatdesk.celery import app
from payments.lifecycle import Status
from payments.tasks import expire_due_payment_requests_task, purge_processed_webhook_events_task
from tests.payments.conftest import make_request

SWEEP = expire_due_payment_requests_task.name  # every 0.5 s
HOURLY = purge_processed_webhook_events_task.name


@pytest.fixture
def console():
    """What the configured console handler prints while the test runs."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    printed = io.StringIO()
    before = handler.setStream(printed)
    yield printed
    handler.setStream(before)


def beat_sends(entry: str, task: str) -> None:
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", entry, task)


def worker_receives(task: str) -> None:
    context = {"id": str(uuid.uuid4()), "name": task, "args": "()", "kwargs": "{}", "eta": None}
    logging.getLogger("celery.worker.strategy").info(LOG_RECEIVED, context, extra={"data": context})


def worker_runs(task) -> None:
    tracer = build_tracer(task.name, task, app=app, eager=False, propagate=True)
    tracer(str(uuid.uuid4()), (), {}, {"delivery_info": {}})


def test_a_sweep_that_found_nothing_to_do_leaves_no_line(console, transactional_db):
    beat_sends("chat2pay-expire-due-requests", SWEEP)
    worker_receives(SWEEP)
    worker_runs(expire_due_payment_requests_task)

    assert console.getvalue() == ""


def test_a_sweep_that_did_something_logs_its_count(console, transactional_db):
    make_request(Status.SENT, click_deadline=timezone.now() - timedelta(seconds=1))

    worker_runs(expire_due_payment_requests_task)

    assert f"{SWEEP}[" in console.getvalue()
    assert "succeeded in" in console.getvalue()
    assert console.getvalue().rstrip().endswith(": 1")


def test_an_hourly_task_logs_as_before(console, transactional_db):
    beat_sends("payments-purge-processed-webhook-events", HOURLY)
    worker_receives(HOURLY)
    worker_runs(purge_processed_webhook_events_task)

    lines = console.getvalue().splitlines()
    assert len(lines) == 3
    assert f"Sending due task payments-purge-processed-webhook-events ({HOURLY})" in lines[0]
    assert f"{HOURLY}[" in lines[1]
    assert lines[1].endswith("received")
    assert f"{HOURLY}[" in lines[2]
    assert "succeeded in" in lines[2]


def test_a_sweeps_warnings_are_kept(console):
    logging.getLogger("celery.app.trace").warning(
        "Task %(name)s[%(id)s] retry", {"name": SWEEP, "id": "x"}, extra={"data": {"name": SWEEP}}
    )

    assert f"{SWEEP}[x] retry" in console.getvalue()
