"""The Supervisor Desk: read-only views of every Chat 2 Pay transaction and every conversation."""

import logging

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from desk import access
from desk.models import Conversation
from payments.export import csv_response
from payments.models import PaymentRequest

from .forms import SORTABLE_COLUMNS, TransactionFilterForm
from .models import TransactionExport
from .totals import compute_totals

logger = logging.getLogger(__name__)
PAGE_SIZE = 50
CONVERSATIONS_PAGE_SIZE = 100


def _transactions(request) -> tuple[TransactionFilterForm, object]:
    form = TransactionFilterForm(request.GET or None)
    return form, form.filter(PaymentRequest.objects.all())


class CountedPaginator(Paginator):
    """A paginator told its count up front: the totals have just counted the same requests."""

    def __init__(self, object_list, per_page, *, count: int):
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count


def _page_of_requests(form: TransactionFilterForm, requests, page_number, *, count: int):
    """One page of the list: ids first, sorted on the requests table alone (an index for the default
    newest-first order), then the 50 rows with their customer, agent and conversation."""
    page = CountedPaginator(
        form.ordered(requests).values_list("pk", flat=True), PAGE_SIZE, count=count
    ).get_page(page_number)
    ids = list(page.object_list)
    rows = PaymentRequest.objects.select_related("customer", "agent", "conversation").in_bulk(ids)
    page.object_list = [rows[pk] for pk in ids]
    return page


def _results_context(request) -> dict:
    form, requests = _transactions(request)
    totals = compute_totals(requests)
    page = _page_of_requests(form, requests, request.GET.get("page"), count=totals.sent)
    query = request.GET.copy()
    query.pop("page", None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    return {
        "form": form,
        "page": page,
        "totals": totals,
        "sort": form.sort_key,
        "columns": SORTABLE_COLUMNS,
        "query": query.urlencode(),
        "sort_query": sort_query.urlencode(),
    }


@access.supervisor_required
@require_GET
def index(request):
    return render(request, "supervisor/transactions.html", _results_context(request))


@access.supervisor_required
@require_GET
def transaction_results(request):
    return render(request, "supervisor/transactions.html#results", _results_context(request))


@access.supervisor_required
@require_GET
def transaction_detail(request, pk: int):
    payment_request = get_object_or_404(
        PaymentRequest.objects.select_related("customer", "agent", "conversation"), pk=pk
    )
    context = {
        "pr": payment_request,
        "events": payment_request.events.select_related("actor_user"),
        "exceptions": payment_request.exceptions.all(),
    }
    if request.htmx:
        return render(request, "supervisor/transaction.html#detail", context)
    return render(request, "supervisor/transaction.html", context)


def _recordable(query: dict[str, str]) -> dict[str, str]:
    """The query string as the export's audit row can store it: PostgreSQL's jsonb refuses NUL characters
    (a 500 for `?q=%00`), and nobody needs 10 kB of a pasted filter to audit an export."""
    return {key.replace("\x00", "")[:50]: value.replace("\x00", "")[:200] for key, value in query.items()}


@access.supervisor_required
@require_GET
def export_csv(request):
    form, requests = _transactions(request)
    requests = form.ordered(requests)
    export = TransactionExport.objects.create(
        user=request.user, filters=_recordable(request.GET.dict()), row_count=requests.count()
    )
    logger.info(
        "Transactions export %s by %s: %s rows", export.pk, request.user.get_username(), export.row_count
    )
    return csv_response(requests)


@access.supervisor_required
@require_GET
def conversation_list(request):
    conversations = Conversation.objects.select_related("customer", "assigned_agent")[
        :CONVERSATIONS_PAGE_SIZE
    ]
    template = (
        "supervisor/conversations.html#conversations" if request.htmx else "supervisor/conversations.html"
    )
    return render(request, template, {"conversations": conversations})


@access.supervisor_required
@require_GET
def conversation_detail(request, pk: int):
    conversation = access.get_conversation_for_viewer(request.user, pk)
    return render(
        request,
        "supervisor/conversation.html",
        {"conversation": conversation, "messages": conversation.transcript(), "viewer": "supervisor"},
    )
