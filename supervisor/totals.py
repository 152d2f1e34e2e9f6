"""The figures that answer the vendor guide's questions, for any filtered set of payment requests.

The figures come from two passes over the filtered set (compute_totals), so the cost does not grow with the
number of agents.
"""

from __future__ import annotations

from collections import defaultdict
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
    """Funnel, medians, per-status, per-agent and per-currency figures in three queries whatever the number of
    agents: one grouped pass over the filtered requests, one pass for the two medians over the clicked ones,
    and the few agents' names (looked up afterwards, not joined per row).

    Everything but the medians is a sum over (agent, currency, status) groups, so one GROUP BY serves all of
    it, and PostgreSQL can run it in parallel. The medians need every value sorted; kept out of the grouped
    query they do not force it onto a single process. Each pass re-evaluates the filters, and a broad search
    costs a full pass over the customers each time, so fewer passes is what makes the broad search affordable
    (docs/supervisor.md, "Performance").
    """
    requests = requests.order_by()
    groups = list(
        requests.values_list("agent", "currency", "status").annotate(
            count=Count("pk"), clicked=Count("clicked_at"), amount=Sum("amount")
        )
    )
    medians = requests.filter(clicked_at__isnull=False).aggregate(
        click=Median(_seconds("clicked_at", "sent_at")),
        pay=Median(_seconds("paid_at", "clicked_at"), filter=Q(status=Status.PAID)),
    )
    by_status: dict[str, int] = defaultdict(int)
    sent_by_agent: dict[int, int] = defaultdict(int)
    by_agent: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # agent -> status -> count
    collected: dict[str, Decimal] = defaultdict(Decimal)
    clicked = 0
    for agent, currency, status, count, clicked_count, amount in groups:
        by_status[status] += count
        sent_by_agent[agent] += count
        by_agent[agent][status] += count
        clicked += clicked_count
        if status == Status.PAID:
            collected[currency] += amount
    names = {user.pk: display_name(user) for user in get_user_model().objects.filter(pk__in=by_agent)}
    agents = sorted(sent_by_agent.items(), key=lambda item: (-item[1], item[0]))
    return Totals(
        sent=sum(by_status.values()),
        clicked=clicked,
        paid=by_status[Status.PAID],
        by_status={status.value: by_status[status.value] for status in Status if by_status[status.value]},
        median_click_seconds=medians["click"],
        median_pay_seconds=medians["pay"],
        by_agent=[
            AgentRow(
                name=names[agent],
                sent=sent,
                paid=by_agent[agent][Status.PAID],
                expired=by_agent[agent][Status.EXPIRED],
                canceled=by_agent[agent][Status.CANCELED],
            )
            for agent, sent in agents
        ],
        collected=[(code, lifecycle.format_amount(total, code)) for code, total in sorted(collected.items())],
    )
