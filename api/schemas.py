"""The API's JSON shapes (Django Ninja / Pydantic): what the OpenAPI schema documents and responses obey."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from ninja import Field, Schema

from payments.lifecycle import ActorKind, Reason, Status

MAX_ID = 2**63 - 1  # PostgreSQL bigint: larger ids cannot exist, and must not reach the database

StatusValue = Enum("StatusValue", {status.name: status.value for status in Status}, type=str)
ActorValue = Enum("ActorValue", {kind.name: kind.value for kind in ActorKind}, type=str)
ReasonValue = Enum("ReasonValue", {reason.name: reason.value for reason in Reason}, type=str)


class Error(Schema):
    code: str = Field(description="Stable, machine-readable error code, e.g. `already_clicked`")
    message: str = Field(description="What went wrong, for people")
    errors: dict[str, list[str]] | None = Field(None, description="Per-field messages (validation errors)")


class Person(Schema):
    id: int
    username: str
    name: str = Field(description="Full name, else username")


class Customer(Schema):
    id: int
    name: str
    phone: str = Field(description="E.164")


class PaymentRequestOut(Schema):
    id: int
    object: Literal["payment_request"] = "payment_request"
    version: int = Field(description="Increases with every change: keep the highest you have seen")
    status: StatusValue
    order_number: str
    amount: str = Field(description="Decimal string in the currency's minor units, e.g. `120.50`")
    currency: str = Field(description="ISO 4217")
    description: str
    phone: str = Field(description="Where the link was sent (E.164)")
    conversation_id: int
    customer: Customer
    agent: Person = Field(description="The agent who sent it")
    gateway: str
    sent_at: datetime = Field(description="When it was created and sent")
    click_deadline: datetime
    clicked_at: datetime | None
    pay_deadline: datetime | None
    paid_at: datetime | None
    closed_at: datetime | None = Field(description="When it became paid, canceled, expired or failed")
    expires_at: datetime | None = Field(description="The deadline running now (none once closed)")
    failure_reason: str
    last_decline: str
    updated_at: datetime


class HistoryEntry(Schema):
    from_status: StatusValue | None = Field(description="None for the first entry (sent)")
    to_status: StatusValue
    at: datetime
    actor: ActorValue
    actor_user: Person | None
    reason: ReasonValue
    details: dict


class PaymentRequestDetail(PaymentRequestOut):
    history: list[HistoryEntry] = Field(description="Every change, oldest first")


class PaymentRequestList(Schema):
    object: Literal["list"] = "list"
    data: list[PaymentRequestOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None on the last")


class PaymentRequestCreate(Schema):
    conversation_id: int = Field(ge=1, le=MAX_ID, description="An open conversation assigned to the agent")
    agent_id: int = Field(ge=1, le=MAX_ID, description="The agent who sends it (it appears as theirs)")
    amount: str = Field(max_length=32, description="Decimal string, e.g. `120.50`")
    currency: str | None = Field(None, max_length=3, description="ISO 4217; default: the deployment's")
    order_number: str = Field(max_length=40)
    description: str = Field("", max_length=200)
    phone: str | None = Field(None, max_length=32, description="Defaults to the conversation's customer")
