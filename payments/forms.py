"""The agent's Chat 2 Pay form: every rule about what an agent may type, with an inline error for each."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from django import forms
from django.conf import settings

from desk.actions import normalize_phone

from . import lifecycle

AMOUNT_PATTERN = re.compile(r"-?\d{1,15}(\.\d{1,10})?")
ORDER_NUMBER_PATTERN = re.compile(r"[\w\-./#: ]+")
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[0-9a-f]{32}")


def new_idempotency_key() -> str:
    """One per rendered form: a double-clicked or resubmitted Send carries the same key."""
    return uuid.uuid4().hex


class PaymentRequestForm(forms.Form):
    phone = forms.CharField(label="Phone number", max_length=32)
    amount = forms.CharField(
        label="Amount", max_length=32, widget=forms.TextInput(attrs={"inputmode": "decimal"})
    )
    currency = forms.ChoiceField(
        label="Currency",
        choices=lifecycle.currency_choices,
        error_messages={"invalid_choice": "Choose one of the listed currencies."},
    )
    order_number = forms.CharField(label="Order number", max_length=40)
    description = forms.CharField(label="Description", max_length=200, required=False)
    idempotency_key = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", "chat2pay-%s")  # unique on a desk page that has other forms
        super().__init__(*args, **kwargs)

    @classmethod
    def for_conversation(cls, conversation) -> PaymentRequestForm:
        """An empty form: the customer's phone filled in, the deployment's currency selected, a fresh key."""
        return cls(
            initial={
                "phone": conversation.customer.phone,
                "currency": settings.CHAT2PAY_DEFAULT_CURRENCY,
                "idempotency_key": new_idempotency_key(),
            }
        )

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"])

    def clean_order_number(self) -> str:
        order_number = self.cleaned_data["order_number"].strip()
        if not ORDER_NUMBER_PATTERN.fullmatch(order_number):
            raise forms.ValidationError("Use letters, digits, spaces and - _ . / # : only.")
        return order_number

    def clean_description(self) -> str:
        return "".join(char for char in self.cleaned_data["description"] if char.isprintable()).strip()

    def clean_idempotency_key(self) -> str:
        if not IDEMPOTENCY_KEY_PATTERN.fullmatch(self.cleaned_data["idempotency_key"]):
            raise forms.ValidationError("This form is out of date. Close it and open Chat 2 Pay again.")
        return self.cleaned_data["idempotency_key"]

    def clean(self) -> dict:
        cleaned = super().clean()
        raw = self.cleaned_data.get("amount")
        currency = cleaned.get("currency")
        if raw is None:
            return cleaned
        raw = raw.strip()
        if not AMOUNT_PATTERN.fullmatch(raw):
            self.add_error("amount", "Enter an amount in numbers, such as 120.50.")
            return cleaned
        amount = Decimal(raw)
        if amount <= 0:
            self.add_error("amount", "Enter an amount greater than zero.")
        elif currency and amount != lifecycle.quantize(amount, currency):
            places = lifecycle.MINOR_UNITS[currency]
            self.add_error(
                "amount",
                f"{currency} amounts have no decimal places."
                if places == 0
                else f"{currency} amounts have at most {places} decimal places.",
            )
        elif amount > settings.CHAT2PAY_MAX_AMOUNT:
            limit = (
                lifecycle.format_amount(settings.CHAT2PAY_MAX_AMOUNT, currency)
                if currency
                else settings.CHAT2PAY_MAX_AMOUNT
            )
            self.add_error("amount", f"The most a single request may ask for is {limit}.")
        else:
            cleaned["amount"] = amount
        return cleaned
