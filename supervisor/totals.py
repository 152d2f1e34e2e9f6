"""The figures that answer the vendor guide's questions, for any filtered set of payment requests.

Each is one aggregate query over the filtered set, so the cost does not grow with the number of agents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Sum
from django.db.models.functions import Extract

from desk.actions import display_name
from payments import lifecycle
from payments.lifecycle import Status
from payments.models import PaymentRequest


class Median(Aggregate):
    """PostgreSQL's exact median of an expression."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _seconds(end: str, start: str):
    return Extract(F(end) - F(start), "epoch")


@dataclass
class AgentRow:
    name: str
    sent: int
    paid: int
    expired: int
    canceled: int

    @property
    def expired_rate(self) -> float:
        return self.expired / self.sent if self.sent else 0.0

    @property
    def canceled_rate(self) -> float:
        return self.canceled / self.sent if self.sent else 0.0


@dataclass
class Totals:
    sent: int = 0
    clicked: int = 0
    paid: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_agent: list[AgentRow] = field(default_factory=list)
    collected: list[tuple[str, Decimal]] = field(default_factory=list)
    median_click_seconds: float | None = None
    median_pay_seconds: float | None = None

    @property
    def click_rate(self) -> float:
        return self.clicked / self.sent if self.sent else 0.0

    @property
    def pay_rate(self) -> float:
        """Paid out of clicked: the second step of the funnel."""
        return self.paid / self.clicked if self.clicked else 0.0

    @property
    def conversion_rate(self) -> float:
        return self.paid / self.sent if self.sent else 0.0

    @property
    def status_rows(self) -> list[tuple[str, str, int]]:
        return [(status.value, status.label, self.by_status.get(status.value, 0)) for status in Status]

    @property
    def busiest_agent_count(self) -> int:
        return max((row.sent for row in self.by_agent), default=0)


def compute_totals(requests: QuerySet[PaymentRequest]) -> Totals:
    """Funnel, medians, per-status, per-agent and per-currency figures: four queries, each one pass over
    the filtered requests alone (names are looked up afterwards for the few agents, not joined per row)."""
    requests = requests.order_by()
    funnel = requests.aggregate(
        sent=Count("pk"),
        clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
        median_click=Median(_seconds("clicked_at", "sent_at"), filter=Q(clicked_at__isnull=False)),
        median_pay=Median(
            _seconds("paid_at", "clicked_at"), filter=Q(status=Status.PAID, clicked_at__isnull=False)
        ),
        **{f"status_{status.value}": Count("pk", filter=Q(status=status)) for status in Status},
    )
    agents = list(
        requests.values("agent")
        .annotate(
            sent=Count("pk"),
            paid=Count("pk", filter=Q(status=Status.PAID)),
            expired=Count("pk", filter=Q(status=Status.EXPIRED)),
            canceled=Count("pk", filter=Q(status=Status.CANCELED)),
        )
        .order_by("-sent", "agent")
    )
    names = {
        user.pk: display_name(user)
        for user in get_user_model().objects.filter(pk__in=[a["agent"] for a in agents])
    }
    collected = (
        requests.filter(status=Status.PAID)
        .values("currency")
        .annotate(total=Sum("amount"))
        .order_by("currency")
    )
    by_status = {status.value: funnel[f"status_{status.value}"] for status in Status}
    return Totals(
        sent=funnel["sent"],
        clicked=funnel["clicked"],
        paid=by_status[Status.PAID],
        by_status={status: count for status, count in by_status.items() if count},
        median_click_seconds=funnel["median_click"],
        median_pay_seconds=funnel["median_pay"],
        by_agent=[
            AgentRow(
                name=names[row["agent"]],
                sent=row["sent"],
                paid=row["paid"],
                expired=row["expired"],
                canceled=row["canceled"],
            )
            for row in agents
        ],
        collected=[
            (row["currency"], lifecycle.format_amount(row["total"], row["currency"])) for row in collected
        ],
    )
