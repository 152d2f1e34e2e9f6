"""Measure how late the desk learns that a payment request expired, with many open requests in the table.

    python manage.py measure_expiry_lateness [--open 10000] [--background 10000] [--spread 120] [--no-spawn]

1. Lays down `--open` requests in `sent` (as `payments.actions` would leave them), spread over the bench's
   own conversations, plus `--background` open requests due tomorrow, so the table never holds fewer open
   requests than that.
2. Subscribes to those conversations' channel-layer groups, exactly as every agent tab does.
3. Starts a Celery worker and beat (unless --no-spawn, e.g. beside `make run`), waits until the worker
   answers, then sets the deadlines (spread evenly over `--spread` seconds, starting a few seconds out) and
   waits until every one of the requests has expired.
4. Reports, per request, the lateness of the `expired` push (when it reached a subscriber, minus the
   deadline) and of the stored transition (history row time minus deadline): median, p90, p99 and max.

The requests stay in the database (history is append-only), so run it against a scratch database, e.g.
DATABASE_URL=postgres://…/chatdesk_bench. It refuses to run with DEBUG off unless --force.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from chatdesk.channel_groups import join_groups
from desk import realtime as desk_realtime
from desk.models import Conversation, Customer, Message
from payments import lifecycle, realtime
from payments.lifecycle import Status
from payments.models import PaymentEvent, PaymentRequest, hash_token, new_payment_token

REQUESTS_PER_CONVERSATION = 100
LEAD_SECONDS = 8  # time for the worker and beat to start before the first deadline


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Command(BaseCommand):
    help = "Measure expiry lateness (deadline to the desk's push) with many open Chat 2 Pay requests."

    def add_arguments(self, parser):
        parser.add_argument("--open", type=int, default=10_000, help="Requests to expire and measure.")
        parser.add_argument("--background", type=int, default=10_000, help="Open requests due tomorrow.")
        parser.add_argument("--spread", type=float, default=120, help="Seconds over which deadlines fall.")
        parser.add_argument("--no-spawn", action="store_true", help="Use an already running worker and beat.")
        parser.add_argument(
            "--timeout", type=float, default=120, help="Give up this long after the last deadline."
        )
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    def handle(
        self, *args, open: int, background: int, spread: float, no_spawn: bool, timeout: float, **options
    ):
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "This writes thousands of permanent rows; use a scratch database and DEBUG, or --force."
            )
        started = time.monotonic()
        measured, conversation_ids = self._lay_down(open, background)
        self.stdout.write(
            f"Created {open + background} open requests in {time.monotonic() - started:.1f}s;"
            f" {open} fall due over {spread:.0f}s."
        )
        processes = [] if no_spawn else self._spawn()
        try:
            if processes:
                self._wait_for_worker(processes)
            deadlines = self._schedule(measured, spread)
            pushed = asyncio.run(self._listen(deadlines, conversation_ids, timeout))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
        self._report(deadlines, pushed)

    @transaction.atomic
    def _lay_down(self, measured: int, background: int) -> tuple[list[PaymentRequest], list[int]]:
        """Every request, due tomorrow; returns the ones to measure and their conversations."""
        count = measured + background
        run = secrets.token_hex(3)
        agent, _ = get_user_model().objects.get_or_create(
            username="expiry-bench",
            defaults={"first_name": "Expiry", "last_name": "Bench", "is_active": False},
        )
        customer = Customer.objects.create(name=f"Expiry bench {run}", phone="+27820000000")
        now = timezone.now()
        conversations = Conversation.objects.bulk_create(
            Conversation(
                customer=customer, status=Conversation.Status.OPEN, assigned_agent=agent, last_activity_at=now
            )
            for _ in range(-(-count // REQUESTS_PER_CONVERSATION))
        )
        messages = Message.objects.bulk_create(
            (
                Message(
                    conversation=conversations[index // REQUESTS_PER_CONVERSATION],
                    direction=Message.Direction.OUTBOUND,
                    kind=Message.Kind.PAYMENT,
                    author=agent,
                    body="Expiry bench link",
                )
                for index in range(count)
            ),
            batch_size=2000,
        )
        requests = PaymentRequest.objects.bulk_create(
            (
                PaymentRequest(
                    conversation_id=message.conversation_id,
                    customer=customer,
                    agent=agent,
                    message=message,
                    phone=customer.phone,
                    amount=Decimal("10.00"),
                    currency="ZAR",
                    order_number=f"BENCH-{run}-{index}",
                    token_hash=hash_token(new_payment_token()),
                    idempotency_key=f"bench-{run}-{index}",
                    sent_at=now,
                    click_deadline=now + timedelta(days=1),  # scheduled below, once everything is written
                    gateway=settings.CHAT2PAY_GATEWAY,
                )
                for index, message in enumerate(messages)
            ),
            batch_size=2000,
        )
        PaymentEvent.objects.bulk_create(
            (
                PaymentEvent(
                    payment_request=request,
                    to_status=Status.SENT,
                    at=now,
                    actor_kind="agent",
                    actor_user=agent,
                    reason=lifecycle.Reason.SENT,
                )
                for request in requests
            ),
            batch_size=2000,
        )
        requests = requests[:measured]
        return requests, sorted({request.conversation_id for request in requests})

    def _wait_for_worker(self, processes: list[subprocess.Popen], limit: float = 120) -> None:
        """Wait until the spawned worker answers, so that its start-up (slow on a loaded machine) is not
        measured as lateness of the first deadlines."""
        from chatdesk.celery import app

        give_up = time.monotonic() + limit
        while not app.control.ping(timeout=1):
            if time.monotonic() > give_up or any(process.poll() is not None for process in processes):
                raise CommandError("The Celery worker did not start.")
        self.stdout.write("Worker is up.")

    def _schedule(self, requests: list[PaymentRequest], spread: float) -> dict[int, float]:
        """Deadlines evenly spread over `spread` seconds, starting LEAD_SECONDS from now (beat's start-up)."""
        first = timezone.now() + timedelta(seconds=LEAD_SECONDS)
        for index, request in enumerate(requests):
            request.click_deadline = first + timedelta(seconds=spread * index / len(requests))
        PaymentRequest.objects.bulk_update(requests, ["click_deadline"], batch_size=2000)
        return {request.pk: request.click_deadline.timestamp() for request in requests}

    def _spawn(self) -> list[subprocess.Popen]:
        binary = Path(sys.executable).parent
        schedule = Path(tempfile.mkdtemp()) / "celerybeat-schedule"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        return [
            subprocess.Popen(
                [str(binary / "celery"), "-A", "chatdesk", "worker", "-l", "warning", "--concurrency", "2"],
                env=os.environ,
                **quiet,
            ),
            subprocess.Popen(
                [str(binary / "celery"), "-A", "chatdesk", "beat", "-l", "warning", "-s", str(schedule)],
                env=os.environ,
                **quiet,
            ),
        ]

    async def _listen(
        self, deadlines: dict[int, float], conversation_ids: list[int], timeout: float
    ) -> dict[int, float]:
        """Receive the expired cards as a web process does for an agent's tab (`desk.card_fanout`): in the
        group of the conversations shown, and of the web processes; the first card per request counts."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        groups = [desk_realtime.conversation_group(conversation_id) for conversation_id in conversation_ids]
        await join_groups(layer, [(group, channel) for group in [*groups, desk_realtime.CARDS_GROUP]])
        pushed: dict[int, float] = {}
        give_up = max(deadlines.values()) + timeout
        try:
            while len(pushed) < len(deadlines) and time.time() < give_up:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), timeout=1)
                except TimeoutError:
                    continue
                if message["type"] != realtime.CARDS_EVENT_TYPE:
                    continue
                request_ids = [card["id"] for _, cards in message["conversations"] for card in cards]
                arrived = time.time()
                for request_id in request_ids:
                    if request_id in deadlines and request_id not in pushed:
                        pushed[request_id] = arrived
                        if len(pushed) % 1000 == 0:
                            self.stdout.write(f"  {len(pushed)} expired")
        finally:
            for group in [*groups, desk_realtime.CARDS_GROUP]:
                await layer.group_discard(group, channel)
        return pushed

    def _report(self, deadlines: dict[int, float], pushed: dict[int, float]) -> None:
        stored = dict(
            PaymentEvent.objects.filter(
                payment_request_id__in=list(deadlines), to_status=Status.EXPIRED
            ).values_list("payment_request_id", "at")
        )
        push_lateness = [pushed[pk] - deadlines[pk] for pk in pushed]
        stored_lateness = [stored[pk].timestamp() - deadlines[pk] for pk in stored]
        self.stdout.write(f"Expired: {len(stored)} of {len(deadlines)} stored, {len(pushed)} pushed.")
        for name, values in (
            ("push (deadline -> desk)", push_lateness),
            ("stored transition", stored_lateness),
        ):
            if values:
                self.stdout.write(
                    f"{name}: median {statistics.median(values):.3f}s, p90 {percentile(values, 0.9):.3f}s, "
                    f"p99 {percentile(values, 0.99):.3f}s, max {max(values):.3f}s"
                )
        if len(pushed) < len(deadlines):
            raise CommandError(f"{len(deadlines) - len(pushed)} requests were not pushed as expired in time.")
