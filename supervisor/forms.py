"""The Supervisor Desk's filters: one form reads the query string for the list, the totals and the export."""

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from desk.access import AGENTS_GROUP
from desk.models import Customer
from payments import lifecycle
from payments.models import PaymentRequest

# Column key in the URL -> model ordering. Every column of the list can be sorted, both ways.
SORTABLE_COLUMNS = {
    "order": "order_number",
    "amount": "amount",
    "currency": "currency",
    "customer": "customer__name",
    "agent": "agent__username",
    "channel": "conversation__channel",
    "status": "status",
    "sent": "sent_at",
    "clicked": "clicked_at",
    "closed": "closed_at",
}
DEFAULT_SORT = "-sent"
MAX_LISTED_CUSTOMERS = 500


def matching_customers(q: str) -> QuerySet[Customer]:
    """Customers whose name or phone contains `q`: the trigram indexes on desk_customer serve both sides
    (UPPER(name) LIKE '%Q%' OR phone LIKE '%q%'), so a narrow search does not read every customer."""
    return Customer.objects.filter(Q(name__icontains=q) | Q(phone__contains=q.replace(" ", "")))


class TransactionFilterForm(forms.Form):
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *lifecycle.Status.choices]
    )
    agent = forms.ModelChoiceField(label="Agent", required=False, queryset=None, empty_label="Any agent")
    currency = forms.ChoiceField(label="Currency", required=False)
    sent_from = forms.DateField(
        label="Sent from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    sent_to = forms.DateField(label="Sent to", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    q = forms.CharField(label="Search", required=False, max_length=100)
    sort = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = (
            get_user_model()
            .objects.filter(groups__name=AGENTS_GROUP)
            .order_by("first_name", "last_name", "username")
        )
        self.fields["agent"].label_from_instance = lambda user: user.get_full_name() or user.get_username()
        self.fields["currency"].choices = [("", "Any currency"), *lifecycle.currency_choices()]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("sent_from"), cleaned.get("sent_to")
        if start and end and start > end:
            self.add_error("sent_to", "The end date is before the start date.")
        return cleaned

    @property
    def sort_key(self) -> str:
        sort = (self.cleaned_data.get("sort") if self.is_valid() else "") or DEFAULT_SORT
        return sort if sort.lstrip("-") in SORTABLE_COLUMNS else DEFAULT_SORT

    def filter(self, requests: QuerySet[PaymentRequest]) -> QuerySet[PaymentRequest]:
        """The requests matching the filters (all of them when the form is empty or invalid)."""
        if not self.is_valid():
            return requests
        data = self.cleaned_data
        if data["status"]:
            requests = requests.filter(status=data["status"])
        if data["agent"]:
            requests = requests.filter(agent=data["agent"])
        if data["currency"]:
            requests = requests.filter(currency=data["currency"])
        if data["sent_from"]:
            requests = requests.filter(sent_at__date__gte=data["sent_from"])
        if data["sent_to"]:
            requests = requests.filter(sent_at__date__lte=data["sent_to"])
        if q := data["q"].strip():
            # Order numbers match from their start (an index serves it); customers by any part of the name
            # or phone, looked up in the customers table first rather than joined to every request.
            # A few matching customers are fetched once and listed: as a subquery, each of the totals queries
            # would re-scan the customers table. A broad search keeps the subquery (a huge list costs more).
            matching = matching_customers(q)
            ids = list(matching.values_list("pk", flat=True)[: MAX_LISTED_CUSTOMERS + 1])
            customers = ids if len(ids) <= MAX_LISTED_CUSTOMERS else matching.values("pk")
            requests = requests.filter(Q(order_number__istartswith=q) | Q(customer__in=customers))
        return requests

    def ordered(self, requests: QuerySet[PaymentRequest]) -> QuerySet[PaymentRequest]:
        key = self.sort_key
        field = SORTABLE_COLUMNS[key.lstrip("-")]
        descending = key.startswith("-")
        return requests.order_by(f"-{field}" if descending else field, "-pk" if descending else "pk")
