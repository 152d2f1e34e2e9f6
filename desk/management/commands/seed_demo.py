"""Demo users, customers and conversations. Idempotent; refuses to run with DEBUG off unless --force."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from desk import actions
from desk.access import AGENTS_GROUP, SUPERVISORS_GROUP
from desk.models import Customer

DEMO_PASSWORD = "chatdesk-demo"
DEMO_USERS = [
    # username, first name, last name, group (None for the superuser)
    ("agent1", "Agent", "One", AGENTS_GROUP),
    ("agent2", "Agent", "Two", AGENTS_GROUP),
    ("supervisor", "Sam", "Supervisor", SUPERVISORS_GROUP),
    ("admin", "Ada", "Admin", None),
]
DEMO_CUSTOMERS = [
    ("Thandi Nkosi", "+27821234567", "Hi, I'd like to pay for order 1001."),
    ("Lerato Mokoena", "+27831234568", "Is my delivery still on for Friday?"),
    ("John Smith", "+14155550123", "Can I change the size on my order?"),
]


class Command(BaseCommand):
    help = "Create the demo users (password 'chatdesk-demo'), customers and conversations. Safe to re-run."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    @transaction.atomic
    def handle(self, *args, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo creates users with a known password; with DEBUG off, pass --force.")
        User = get_user_model()
        users = {}
        for username, first, last, group_name in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"first_name": first, "last_name": last}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_staff = user.is_superuser = group_name is None
                user.save()
            if group_name:
                user.groups.add(Group.objects.get_or_create(name=group_name)[0])
            users[username] = user
        if not Customer.objects.exists():
            for index, (name, phone, body) in enumerate(DEMO_CUSTOMERS):
                conversation = actions.start_conversation(name=name, phone=phone, body=body)
                if index == 0:
                    actions.accept_conversation(conversation.pk, agent=users["agent1"])
                    actions.send_agent_message(
                        conversation.pk, agent=users["agent1"], body="Hello Thandi, I can help with that."
                    )
        self.stdout.write(
            self.style.SUCCESS(f"Demo data ready. Users: {', '.join(users)}; password: {DEMO_PASSWORD}")
        )
