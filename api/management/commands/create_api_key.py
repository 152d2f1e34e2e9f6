"""Create an API key: `make manage ARGS="create_api_key --name 'OMS' --scope write"`.

The key is printed once, alone on the last line (so scripts can take `tail -n 1`); only its hash is kept.
"""

from django.core.management.base import BaseCommand, CommandError

from api import keys
from api.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key and print it once (alone on the last line)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", required=True, help="Who uses the key, e.g. 'OMS production'")
        parser.add_argument("--scope", required=True, choices=ApiKey.Scope.values)

    def handle(self, *args, name: str, scope: str, **options) -> None:
        if not name.strip():
            raise CommandError("--name must not be empty.")
        api_key, key = keys.create_api_key(name=name.strip(), scope=scope)
        self.stdout.write(
            f"Created {api_key.get_scope_display().lower()} API key {name.strip()!r} ({api_key.prefix}…). "
            "Copy it now; it is not shown again:"
        )
        self.stdout.write(key)
