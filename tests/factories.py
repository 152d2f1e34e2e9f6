"""Factories for every app's models (one module; split per app when it grows)."""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from factory.django import DjangoModelFactory

from desk.access import AGENTS_GROUP, SUPERVISORS_GROUP
from desk.models import Conversation, Customer, Message


def _add_roles(user, names) -> None:
    user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in names))


class UserFactory(DjangoModelFactory):
    """A user with no role; pass roles=[...] for groups."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.django.Password("chatdesk-test")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        _add_roles(self, extracted or ())


class AgentFactory(UserFactory):
    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        _add_roles(self, extracted or [AGENTS_GROUP])


class SupervisorFactory(UserFactory):
    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        _add_roles(self, extracted or [SUPERVISORS_GROUP])


class CustomerFactory(DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Faker("name")
    phone = factory.Sequence(lambda n: f"+2782{n:07d}")


class ConversationFactory(DjangoModelFactory):
    """A pending web-chat conversation; pass status=open and assigned_agent=... for an accepted one."""

    class Meta:
        model = Conversation

    customer = factory.SubFactory(CustomerFactory)
    last_activity_at = factory.LazyFunction(timezone.now)


class MessageFactory(DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    direction = Message.Direction.INBOUND
    body = factory.Faker("sentence")


class PaymentRequestFactory(DjangoModelFactory):
    """A payment request in any state, for read-side tests (supervisor, admin). Tests of the lifecycle
    itself go through `payments.actions`; this factory only lays down rows as the actions would leave them."""

    class Meta:
        model = "payments.PaymentRequest"

    conversation = factory.SubFactory(
        ConversationFactory, status="open", assigned_agent=factory.SelfAttribute("..agent")
    )
    customer = factory.SelfAttribute("conversation.customer")
    agent = factory.SubFactory(AgentFactory)
    message = factory.SubFactory(
        MessageFactory,
        conversation=factory.SelfAttribute("..conversation"),
        direction=Message.Direction.OUTBOUND,
        kind=Message.Kind.PAYMENT,
        body="Payment request",
    )
    phone = factory.SelfAttribute("customer.phone")
    amount = factory.Faker("pydecimal", left_digits=4, right_digits=2, positive=True, min_value=1)
    currency = "ZAR"
    order_number = factory.Sequence(lambda n: f"ORD-{n:05d}")
    token_hash = factory.Sequence(lambda n: f"{n:064x}")
    idempotency_key = factory.Sequence(lambda n: f"key-{n}")
    status = "sent"
    sent_at = factory.LazyFunction(timezone.now)
    click_deadline = factory.LazyAttribute(lambda pr: pr.sent_at + timedelta(minutes=5))
    gateway = "sandbox"


class PaymentEventFactory(DjangoModelFactory):
    class Meta:
        model = "payments.PaymentEvent"

    payment_request = factory.SubFactory(PaymentRequestFactory)
    from_status = ""
    to_status = "sent"
    at = factory.LazyFunction(timezone.now)
    actor_kind = "agent"
    reason = "sent"


def paid_request_with_history(
    *, agent, sent_at, click_after=timedelta(seconds=40), pay_after=timedelta(minutes=2), **kwargs
):
    """A paid request whose history reads sent → clicked → paid, as the actions would have written it."""
    clicked_at, paid_at = sent_at + click_after, sent_at + pay_after
    payment_request = PaymentRequestFactory(
        agent=agent,
        status="paid",
        sent_at=sent_at,
        clicked_at=clicked_at,
        pay_deadline=clicked_at + timedelta(minutes=15),
        paid_at=paid_at,
        closed_at=paid_at,
        **kwargs,
    )
    PaymentEventFactory(payment_request=payment_request, to_status="sent", actor_user=agent, at=sent_at)
    PaymentEventFactory(
        payment_request=payment_request,
        from_status="sent",
        to_status="clicked",
        actor_kind="customer",
        reason="clicked",
        at=clicked_at,
    )
    PaymentEventFactory(
        payment_request=payment_request,
        from_status="clicked",
        to_status="paid",
        actor_kind="gateway",
        reason="paid",
        at=paid_at,
    )
    return payment_request
