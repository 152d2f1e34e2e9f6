"""The Celery worker's Django set-up: what it keeps between tasks."""

from types import SimpleNamespace

import pytest
from celery import signals
from celery.fixups.django import DjangoWorkerFixup
from django.conf import settings
from django.db import connection

from chatdesk.celery import app

PREFORK = SimpleNamespace(pool_cls="celery.concurrency.prefork:TaskPool")


class QueuedTask:
    """A task as a worker runs it (not eagerly, inside its caller's transaction)."""

    request = SimpleNamespace(is_eager=False)


A_TASK = QueuedTask()


def test_a_prefork_worker_reopens_its_database_pool_once_per_reuse_period_not_per_task(monkeypatch):
    fixup = DjangoWorkerFixup(app)
    fixup.worker = PREFORK
    closed = []
    monkeypatch.setattr(fixup, "_close_database", lambda: closed.append("closed"))

    def run_tasks(count: int) -> None:
        for _ in range(count):
            fixup.on_task_prerun(A_TASK)
            fixup.on_task_postrun(A_TASK)

    run_tasks(settings.CELERY_DB_REUSE_MAX)
    assert closed == []
    run_tasks(1)
    assert closed == ["closed"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signal", [signals.task_prerun, signals.task_postrun])
def test_a_broken_database_connection_is_dropped_between_tasks(monkeypatch, signal):
    """With the pool kept for CELERY_DB_REUSE_MAX tasks, a connection a database restart broke must not be
    handed to the next task too: it goes back to the pool, which drops it, as between two web requests."""
    connection.ensure_connection()
    connection.errors_occurred = True  # a query failed on it...
    monkeypatch.setattr(connection, "is_usable", lambda: False)  # ...and the server is gone
    signal.send(sender=A_TASK, task_id="t", task=A_TASK, args=(), kwargs={})
    assert connection.connection is None
