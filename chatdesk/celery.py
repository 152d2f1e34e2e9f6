"""The Celery app, and the heartbeats that /healthz reads for the worker and for beat."""

import logging
import os
import time

from celery import Celery, bootsteps, signals
from celery.beat import PersistentScheduler
from redis import RedisError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatdesk.settings")

app = Celery("chatdesk", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

WORKER_HEARTBEAT_KEY = "chatdesk:heartbeat:worker"
BEAT_HEARTBEAT_KEY = "chatdesk:heartbeat:beat"


def write_heartbeat(key: str) -> None:
    """Record that a process is alive now (a Unix time in Redis, read by /healthz).

    Best effort: while Redis is down the heartbeat goes stale (and /healthz says so), but the process goes on.
    Raised from beat's tick, the error used to stop beat for good on the first Redis restart.
    """
    from django.conf import settings
    from django.core.cache import cache

    try:
        cache.set(key, time.time(), timeout=settings.HEARTBEAT_STALE_AFTER_SECONDS * 4)
    except (RedisError, OSError) as error:
        logger.warning("Could not write the heartbeat %s: %s", key, error)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Writes the worker's heartbeat from the worker's own timer, independent of beat."""

    requires = {"celery.worker.components:Timer"}

    def start(self, worker):
        from django.conf import settings

        write_heartbeat(WORKER_HEARTBEAT_KEY)
        self.tref = worker.timer.call_repeatedly(
            settings.HEARTBEAT_INTERVAL_SECONDS, write_heartbeat, (WORKER_HEARTBEAT_KEY,), priority=10
        )

    def stop(self, worker):
        if getattr(self, "tref", None):
            self.tref.cancel()


app.steps["worker"].add(WorkerHeartbeat)


@signals.task_prerun.connect
@signals.task_postrun.connect
def hand_back_database_connections(sender=None, **kwargs) -> None:
    """Between tasks, give the database connection back to the pool, as Django does between requests.

    CELERY_DB_REUSE_MAX keeps Celery's Django fix-up from closing the whole pool around every task, and with
    it from closing the connections; this hands them back instead, so a connection that broke (a database
    restart) is dropped by the pool after the one task that found it broken, not reused by the next ones.
    An eager task (tests) runs inside its caller's transaction, so it is left alone, as the fix-up does.
    """
    from django.db import close_old_connections

    if getattr(sender.request, "is_eager", False):
        return
    close_old_connections()


class HeartbeatScheduler(PersistentScheduler):
    """Beat's usual scheduler that also writes beat's heartbeat on every tick."""

    def tick(self, *args, **kwargs):
        from django.conf import settings

        write_heartbeat(BEAT_HEARTBEAT_KEY)
        return min(super().tick(*args, **kwargs), settings.HEARTBEAT_INTERVAL_SECONDS)
