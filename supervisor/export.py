"""CSV export of the filtered transactions: streamed row by row, safe to open in a spreadsheet."""

import csv
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet

from desk.actions import display_name
from payments import lifecycle
from payments.models import PaymentRequest

COLUMNS = [
    "Order number", "Amount", "Currency", "Customer", "Phone", "Agent", "Channel", "Status",
    "Sent at", "Clicked at", "Closed at", "Gateway reference",
]  # fmt: skip
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """Text a spreadsheet will not run as a formula (OWASP CSV injection): `=1+1` becomes `'=1+1`."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def _row(pr: PaymentRequest) -> list[object]:
    return [
        pr.order_number, lifecycle.quantize(pr.amount, pr.currency), pr.currency, pr.customer.name, pr.phone, display_name(pr.agent),
        pr.conversation.get_channel_display(), pr.status,
        pr.sent_at.isoformat(), pr.clicked_at and pr.clicked_at.isoformat(), pr.closed_at and pr.closed_at.isoformat(),
        pr.gateway_reference,
    ]  # fmt: skip


def csv_lines(requests: QuerySet[PaymentRequest]) -> Iterator[str]:
    """The header and one line per request, fetched in chunks from a server-side cursor."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(COLUMNS)  # BOM: spreadsheets then read the UTF-8 names correctly
    rows: Iterable[PaymentRequest] = requests.select_related("customer", "agent", "conversation").iterator(
        chunk_size=2000
    )
    for pr in rows:
        yield writer.writerow([neutralise(value) for value in _row(pr)])
