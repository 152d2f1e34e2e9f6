"""A logging filter that keeps the frequent sweeps' routine lines out of the worker's and beat's logs.

Beat queues the expiry sweep twice a second and the delivery sweeps every few seconds, and Celery logs each
run at INFO three times ("Sending due task", "received", "succeeded ... : 0"): several lines a second that
say nothing happened and bury the ones that matter. The filter leaves those out for every beat entry that
runs more often than once a minute. A sweep that did something still logs its success with the count
("succeeded in 0.08s: 500"), and warnings, errors and retries are never touched. It is installed on the
console handler in settings.LOGGING.
"""

from __future__ import annotations

import logging
from functools import cached_property

# A beat entry that runs at least this often is a sweep whose routine runs are left out of the log.
FREQUENT_SECONDS = 60.0


class QuietFrequentSweepsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        data = getattr(record, "data", None)  # the context Celery's trace and strategy lines carry
        if record.name == "celery.beat":  # "Scheduler: Sending due task %s (%s)": the entry and its task
            return not (record.args and record.args[-1] in self.frequent_tasks)
        if record.name == "celery.worker.strategy" and isinstance(data, dict):  # "Task … received"
            return data.get("name") not in self.frequent_tasks
        if record.name == "celery.app.trace" and isinstance(data, dict) and "return_value" in data:
            return data.get("name") not in self.frequent_tasks or data["return_value"] != "0"  # "succeeded"
        return True

    @cached_property
    def frequent_tasks(self) -> frozenset[str]:
        from django.conf import settings

        return frozenset(
            entry["task"]
            for entry in settings.CELERY_BEAT_SCHEDULE.values()
            if isinstance(entry["schedule"], int | float) and entry["schedule"] < FREQUENT_SECONDS
        )
