"""Generate a large, realistic Chat 2 Pay history for measuring the Supervisor Desk (not for production).

    python manage.py generate_transactions --requests 100000 --events 500000

Rows are bulk-inserted as `payments.actions` would have left them (statuses, timestamps and a consistent
history per request): running the real actions 100,000 times would take far longer and measure the writes,
not the supervisor's reads that this data set is for. It refuses to run with DEBUG off unless --force.
"""

import hashlib
import random
import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from desk.access import AGENTS_GROUP
from desk.models import Conversation, Customer, Message
from payments.lifecycle import ActorKind, Reason, Status
from payments.models import PaymentEvent, PaymentRequest

BATCH = 5000
CURRENCIES = [("ZAR", 2, 0.7), ("USD", 2, 0.15), ("JPY", 0, 0.1), ("KWD", 3, 0.05)]
# Outcome mix of a busy contact centre: most links are paid, some expire unopened or unpaid,
# a few are canceled.
OUTCOMES = [
    ("paid", 0.55),
    ("expired_unclicked", 0.15),
    ("expired_unpaid", 0.1),
    ("canceled", 0.08),
    ("clicked", 0.04),
    ("sent", 0.05),
    ("failed", 0.03),
]


class Command(BaseCommand):
    help = "Bulk-generate payment requests and their history for supervisor performance measurements."

    def add_arguments(self, parser):
        parser.add_argument("--requests", type=int, default=100_000)
        parser.add_argument(
            "--events", type=int, default=500_000, help="Total history rows (at least 1 per request)."
        )
        parser.add_argument("--agents", type=int, default=40)
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    def handle(self, *args, requests: int, events: int, agents: int, seed: int, force: bool, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "This fills the database with synthetic transactions; with DEBUG off, pass --force."
            )
        if events < requests:
            raise CommandError("--events must be at least --requests (every request has its 'sent' row).")
        rng = random.Random(seed)
        agent_users = self._agents(agents)
        now = timezone.now()
        plans = [self._plan(rng, now) for _ in range(requests)]
        self._pad_declines(rng, plans, events - sum(len(plan["events"]) for plan in plans))
        for start in range(0, requests, BATCH):
            with transaction.atomic():
                self._insert(rng, plans[start : start + BATCH], agent_users, start)
            self.stdout.write(f"  {min(start + BATCH, requests):,} / {requests:,} requests")
        self.stdout.write(
            self.style.SUCCESS(f"Generated {requests:,} payment requests and {events:,} history rows.")
        )

    def _agents(self, count: int):
        from django.contrib.auth import get_user_model

        User = get_user_model()
        group, _ = Group.objects.get_or_create(name=AGENTS_GROUP)
        users = []
        for n in range(1, count + 1):
            user, created = User.objects.get_or_create(
                username=f"bench-agent-{n:03d}",
                defaults={"first_name": "Bench", "last_name": f"Agent {n:03d}"},
            )
            if created:
                user.set_unusable_password()
                user.save()
            user.groups.add(group)
            users.append(user)
        return users

    def _plan(self, rng: random.Random, now) -> dict:
        """One request's outcome and timeline, as the actions would have produced it."""
        outcome = rng.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])[0]
        currency, places, _ = rng.choices(CURRENCIES, [w for *_, w in CURRENCIES])[0]
        sent_at = now - timedelta(seconds=rng.randint(900, 90 * 86400))
        plan = {
            "outcome": outcome,
            "currency": currency,
            "sent_at": sent_at,
            "amount": Decimal(rng.randint(100, 500_000)).scaleb(-places)
            if places
            else Decimal(rng.randint(100, 90_000)),
            "events": [("", Status.SENT, sent_at, ActorKind.AGENT, Reason.SENT)],
        }
        click = sent_at + timedelta(seconds=rng.randint(5, 290))
        if outcome in {"paid", "expired_unpaid", "clicked"}:
            plan["clicked_at"] = click
            plan["events"].append((Status.SENT, Status.CLICKED, click, ActorKind.CUSTOMER, Reason.CLICKED))
        if outcome == "paid":
            paid = click + timedelta(seconds=rng.randint(20, 880))
            plan["events"] += [
                (
                    Status.CLICKED,
                    Status.CLICKED,
                    paid - timedelta(seconds=5),
                    ActorKind.CUSTOMER,
                    Reason.PAYMENT_STARTED,
                ),
                (Status.CLICKED, Status.PAID, paid, ActorKind.GATEWAY, Reason.PAID),
            ]
            plan.update(status=Status.PAID, paid_at=paid, closed_at=paid)
        elif outcome == "expired_unclicked":
            closed = sent_at + timedelta(minutes=5, seconds=rng.random())
            plan["events"].append(
                (Status.SENT, Status.EXPIRED, closed, ActorKind.SYSTEM, Reason.CLICK_WINDOW_PASSED)
            )
            plan.update(status=Status.EXPIRED, closed_at=closed)
        elif outcome == "expired_unpaid":
            closed = click + timedelta(minutes=15, seconds=rng.random())
            plan["events"].append(
                (Status.CLICKED, Status.EXPIRED, closed, ActorKind.SYSTEM, Reason.PAY_WINDOW_PASSED)
            )
            plan.update(status=Status.EXPIRED, closed_at=closed)
        elif outcome == "canceled":
            closed = sent_at + timedelta(seconds=rng.randint(5, 200))
            plan["events"].append((Status.SENT, Status.CANCELED, closed, ActorKind.AGENT, Reason.CANCELED))
            plan.update(status=Status.CANCELED, closed_at=closed)
        elif outcome == "failed":
            closed = sent_at + timedelta(seconds=2)
            plan["events"].append(
                (Status.SENT, Status.FAILED, closed, ActorKind.SYSTEM, Reason.DELIVERY_FAILED)
            )
            plan.update(status=Status.FAILED, closed_at=closed)
        else:
            plan["status"] = Status.CLICKED if outcome == "clicked" else Status.SENT
        return plan

    def _pad_declines(self, rng: random.Random, plans: list[dict], missing: int) -> None:
        """Spread declined attempts over clicked requests until the history has the requested size."""
        clicked = [plan for plan in plans if "clicked_at" in plan]
        if missing > 0 and not clicked:
            raise CommandError("No clicked requests to carry the extra history rows; use fewer --events.")
        for n in range(max(missing, 0)):
            plan = clicked[n % len(clicked)]
            at = plan["clicked_at"] + timedelta(seconds=1 + rng.random())
            plan["events"].insert(
                2, (Status.CLICKED, Status.CLICKED, at, ActorKind.GATEWAY, Reason.PAYMENT_DECLINED)
            )

    def _insert(self, rng: random.Random, plans: list[dict], agents, offset: int) -> None:
        customers = Customer.objects.bulk_create(
            Customer(name=f"Customer {offset + n:06d}", phone=f"+2782{rng.randint(0, 9_999_999):07d}")
            for n in range(len(plans))
        )
        conversations = Conversation.objects.bulk_create(
            Conversation(
                customer=customer,
                status=Conversation.Status.CLOSED,
                assigned_agent=rng.choice(agents),
                last_activity_at=plan["sent_at"],
                accepted_at=plan["sent_at"],
                closed_at=plan["sent_at"],
            )
            for customer, plan in zip(customers, plans, strict=True)
        )
        messages = Message.objects.bulk_create(
            Message(
                conversation=conversation,
                direction=Message.Direction.OUTBOUND,
                kind=Message.Kind.PAYMENT,
                author=conversation.assigned_agent,
                body="Payment request",
            )
            for conversation in conversations
        )
        requests = PaymentRequest.objects.bulk_create(
            PaymentRequest(
                conversation=conversation,
                customer=conversation.customer,
                agent=conversation.assigned_agent,
                message=message,
                phone=conversation.customer.phone,
                amount=plan["amount"],
                currency=plan["currency"],
                order_number=f"BENCH-{offset + n:07d}",
                token_hash=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
                idempotency_key=secrets.token_hex(16),
                status=plan["status"],
                sent_at=plan["sent_at"],
                click_deadline=plan["sent_at"] + timedelta(minutes=5),
                clicked_at=plan.get("clicked_at"),
                pay_deadline=plan.get("clicked_at") and plan["clicked_at"] + timedelta(minutes=15),
                paid_at=plan.get("paid_at"),
                closed_at=plan.get("closed_at"),
                gateway="sandbox",
                gateway_reference=f"sbx_bench_{offset + n:07d}" if plan["status"] == Status.PAID else "",
            )
            for n, (conversation, message, plan) in enumerate(
                zip(conversations, messages, plans, strict=True)
            )
        )
        PaymentEvent.objects.bulk_create(
            PaymentEvent(
                payment_request=pr,
                from_status=src,
                to_status=dst,
                at=at,
                actor_kind=kind,
                reason=reason,
                actor_user=pr.agent if kind == ActorKind.AGENT else None,
            )
            for pr, plan in zip(requests, plans, strict=True)
            for src, dst, at, kind, reason in plan["events"]
        )
