"""The Celery worker's Django set-up: what it keeps between tasks."""

from types import SimpleNamespace

from celery.fixups.django import DjangoWorkerFixup
from django.conf import settings

from chatdesk.celery import app

PREFORK = SimpleNamespace(pool_cls="celery.concurrency.prefork:TaskPool")
A_TASK = SimpleNamespace(request=SimpleNamespace(is_eager=False))


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
