"""Factories for every app's models (one module; split per app when it grows)."""

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
