"""The Supervisor Desk's filters: one form reads the query string for the list, the totals and the export."""

import re

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from desk.access import AGENTS_GROUP
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
PHONE_SEPARATORS = re.compile(r"[\s\-().]")
PHONE_DIGITS = re.compile(r"\+?\d+")


def search(q: str) -> Q:
    """Requests whose order number starts with `q`, or whose customer's name or phone contains it (a phone
    typed with spaces or dashes too). Both sides read the requests table alone: an index serves the
    order-number prefix, and the trigram index on the request's copy of its customer's name and phone
    (`customer_search`) serves any part of them, so a narrow search reads few rows and a broad one reads each
    row once per pass."""
    match = Q(order_number__istartswith=q) | Q(customer_search__icontains=q)
    phone = PHONE_SEPARATORS.sub("", q)
    if phone != q and PHONE_DIGITS.fullmatch(phone):
        match |= Q(customer_search__icontains=phone)  # icontains: the index is on UPPER(customer_search)
    return match


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
            requests = requests.filter(search(q))
        return requests

    def ordered(self, requests: QuerySet[PaymentRequest]) -> QuerySet[PaymentRequest]:
        key = self.sort_key
        field = SORTABLE_COLUMNS[key.lstrip("-")]
        descending = key.startswith("-")
        return requests.order_by(f"-{field}" if descending else field, "-pk" if descending else "pk")
