"""CSV export of payment requests (Supervisor Desk and admin): streamed row by row, safe in a spreadsheet."""

import csv
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from desk.actions import display_name

from . import lifecycle
from .models import PaymentRequest

COLUMNS = [
    "Order number",
    "Amount",
    "Currency",
    "Customer",
    "Phone",
    "Agent",
    "Channel",
    "Status",
    "Sent at",
    "Clicked at",
    "Closed at",
    "Gateway reference",
]
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
        pr.order_number,
        lifecycle.quantize(pr.amount, pr.currency),
        pr.currency,
        pr.customer.name,
        pr.phone,
        display_name(pr.agent),
        pr.conversation.get_channel_display(),
        pr.status,
        pr.sent_at.isoformat(),
        pr.clicked_at and pr.clicked_at.isoformat(),
        pr.closed_at and pr.closed_at.isoformat(),
        pr.gateway_reference,
    ]


def csv_lines(requests: QuerySet[PaymentRequest]) -> Iterator[str]:
    """The header and one line per request, fetched in chunks from a server-side cursor."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(COLUMNS)  # BOM: spreadsheets then read the UTF-8 names correctly
    rows: Iterable[PaymentRequest] = requests.select_related("customer", "agent", "conversation").iterator(
        chunk_size=2000
    )
    for pr in rows:
        yield writer.writerow([neutralise(value) for value in _row(pr)])


def csv_response(requests: QuerySet[PaymentRequest]) -> StreamingHttpResponse:
    """A download of `requests` as CSV that never holds the whole list in memory."""
    response = StreamingHttpResponse(csv_lines(requests), content_type="text/csv; charset=utf-8")
    filename = f"chat2pay-transactions-{timezone.localtime():%Y%m%d-%H%M}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
