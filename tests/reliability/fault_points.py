"""Named crash points: Chat Desk's Celery app, whose worker SIGKILLs itself the first time a task reaches one.

The fault-injection tests start `celery -A tests.reliability.fault_points worker --pool solo` with
CHATDESK_FAULT_POINT=<name> in its environment. Nothing in the product knows about this module: it wraps the
product's functions in the worker process only, just before the first task runs. SIGKILL means no cleanup at
all: no ack, no on-commit hooks, no rollback other than PostgreSQL's own for a dropped connection.

Points (see POINTS):
- sweep-before-commit: the expiry sweep has written its batch, the transaction is still open.
- sweep-after-commit-before-push: the batch is committed, its websocket pushes are not sent.
- gateway-before-call: an expired request's checkout is about to be closed at the gateway.
- gateway-after-call: the gateway has closed the checkout; the task has not returned.
"""

from __future__ import annotations

import os
import signal

from celery.signals import task_prerun

from chatdesk.celery import app

__all__ = ["app"]

ENV = "CHATDESK_FAULT_POINT"
POINTS = (
    "sweep-before-commit",
    "sweep-after-commit-before-push",
    "gateway-before-call",
    "gateway-after-call",
)
_installed = False


def die() -> None:
    """kill -9 this worker (with --pool solo the task runs in the worker's only process)."""
    os.kill(os.getpid(), signal.SIGKILL)


def _install(point: str) -> None:
    from django.db import transaction

    from payments import realtime
    from payments.gateways.sandbox import SandboxGateway

    if point.startswith("sweep-"):
        publish = realtime.publish_payment_requests_changed

        def publish_then_maybe_die(payment_requests):
            payment_requests = list(payment_requests)
            if payment_requests and point == "sweep-before-commit":
                die()
            if payment_requests:  # registered first, so it runs before the pushes' own on-commit hook
                transaction.on_commit(die)
            publish(payment_requests)

        realtime.publish_payment_requests_changed = publish_then_maybe_die
    else:
        expire_checkout = SandboxGateway.expire_checkout

        def expire_checkout_and_maybe_die(self, checkout_reference):
            if point == "gateway-before-call":
                die()
            state = expire_checkout(self, checkout_reference)
            die()
            return state

        SandboxGateway.expire_checkout = expire_checkout_and_maybe_die


@task_prerun.connect
def _install_fault_point(**kwargs) -> None:
    global _installed
    point = os.environ.get(ENV, "")
    if _installed or not point:
        return
    if point not in POINTS:
        raise RuntimeError(f"{ENV}={point!r} is not one of {', '.join(POINTS)}")
    _install(point)
    _installed = True
