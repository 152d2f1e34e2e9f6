"""Settings come from the environment, refuse malformed values, and pass Django's deployment checks.

Settings are read once per process, so each case starts a fresh Python with its own environment.
"""

import os
import secrets
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]

# What an operator sets in production (docker-compose.yml); everything else keeps its default.
PRODUCTION = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "desk.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://desk.example.com",
    # Real money: the sandbox is refused with DEBUG off (payments.E003), Stripe needs its keys (E004).
    "CHAT2PAY_GATEWAY": "stripe",
    "CHAT2PAY_PUBLIC_BASE_URL": "https://desk.example.com/",
    "STRIPE_SECRET_KEY": "sk_live_example",
    "STRIPE_WEBHOOK_SECRET": "whsec_example",
}
# Variables that would weaken the production defaults if they leaked in from the test environment.
SECURITY_OVERRIDES = [
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_PRELOAD",
    "WHITENOISE_USE_FINDERS",
]


def _environment(**overrides: str | None) -> dict[str, str]:
    """This test run's environment (its DATABASE_URL, REDIS_URL, SECRET_KEY) with `overrides`; None unsets."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatdesk.settings"}
    for name, value in overrides.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def _python(code: str, **overrides: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_environment(**overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _manage(*args: str, **overrides: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_environment(**overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _production(**overrides: str | None) -> dict[str, str | None]:
    return {
        **dict.fromkeys(SECURITY_OVERRIDES),
        **PRODUCTION,
        "SECRET_KEY": secrets.token_urlsafe(64),
        **overrides,
    }


SETUP = "import django; django.setup()"


class TestMalformedValuesStopStartUp:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("CHAT2PAY_CLICK_WINDOW_SECONDS", "abc"),
            ("CHAT2PAY_CLICK_WINDOW_SECONDS", "0"),
            ("CHAT2PAY_CLICK_WINDOW_SECONDS", "-300"),
            ("CHAT2PAY_PAY_WINDOW_SECONDS", "15m"),
            ("CHAT2PAY_PAY_WINDOW_SECONDS", "0"),
            ("CHAT2PAY_DEFAULT_CURRENCY", "rands"),
            ("DEBUG", "maybe"),
            ("PORT", "http"),
            ("PORT", "70000"),
            ("HEARTBEAT_INTERVAL_SECONDS", "soon"),
            ("HEARTBEAT_STALE_AFTER_SECONDS", "0"),
            ("SESSION_COOKIE_AGE", "1.5"),
            ("SECURE_HSTS_SECONDS", "-1"),
            ("SECURE_SSL_REDIRECT", "sometimes"),
            ("DESK_MESSAGE_MAX_LENGTH", "0"),
            ("DESK_DEFAULT_PHONE_REGION", "XX"),
            ("LOG_LEVEL", "LOUD"),
            ("DATABASE_URL", "sqlite:///chatdesk.db"),
            ("DATABASE_URL", "not a url"),
            ("REDIS_URL", "127.0.0.1:6379"),
            ("DATABASE_POOL_MAX_SIZE", "ten"),
            ("DATABASE_POOL_MAX_SIZE", "-1"),
            ("DATABASE_POOL_MIN_SIZE", "11"),
            ("CHANNEL_LAYER", "memory"),
        ],
    )
    def test_a_malformed_value_is_improperly_configured_and_named(self, name, value):
        result = _python(SETUP, **{name: value})

        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr
        assert name in result.stderr.strip().splitlines()[-1]

    def test_a_missing_secret_key_is_improperly_configured(self):
        result = _python(SETUP, SECRET_KEY=None)

        assert result.returncode != 0
        assert "ImproperlyConfigured: Set SECRET_KEY" in result.stderr

    def test_an_empty_allowed_hosts_is_refused_in_production(self):
        result = _python(SETUP, **_production(ALLOWED_HOSTS=""))

        assert result.returncode != 0
        assert "ImproperlyConfigured: Set ALLOWED_HOSTS" in result.stderr


class TestGatewayChecks:
    def test_the_sandbox_is_refused_in_production_unless_allowed(self):
        refused = _manage("check", **_production(CHAT2PAY_GATEWAY="sandbox"))
        allowed = _manage("check", **_production(CHAT2PAY_GATEWAY="sandbox", CHAT2PAY_ALLOW_SANDBOX="true"))

        assert refused.returncode != 0
        assert "payments.E003" in refused.stderr
        assert allowed.returncode == 0, allowed.stderr

    def test_stripe_is_refused_without_its_keys(self):
        result = _manage("check", **_production(STRIPE_SECRET_KEY=None, STRIPE_WEBHOOK_SECRET=None))

        assert result.returncode != 0
        assert "payments.E004" in result.stderr
        assert "STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET" in result.stderr

    def test_the_embedded_debug_desk_keeps_the_sandbox(self):
        result = _manage("check", DEBUG="true", CHAT2PAY_GATEWAY=None, CHAT2PAY_ALLOW_SANDBOX=None)

        assert result.returncode == 0, result.stderr


class TestValuesAreRead:
    def test_the_database_pool_takes_its_sizes_from_the_environment_and_is_off_at_zero(self):
        show = SETUP + "; from django.conf import settings as s; print(s.DATABASES['default'].get('OPTIONS'))"

        pooled = _python(show, DATABASE_POOL_MIN_SIZE="2", DATABASE_POOL_MAX_SIZE="4")
        unpooled = _python(show, DATABASE_POOL_MAX_SIZE="0")

        assert pooled.returncode == 0, pooled.stderr
        assert "'pool': {'min_size': 2, 'max_size': 4, 'timeout': 10}" in pooled.stdout
        assert unpooled.returncode == 0, unpooled.stderr
        assert "pool" not in unpooled.stdout

    def test_the_channel_layer_is_chosen_by_the_environment(self):
        show = (
            SETUP + "; from django.conf import settings as s; print(s.CHANNEL_LAYERS['default']['BACKEND'])"
        )

        classic = _python(show, CHANNEL_LAYER=None)
        pubsub = _python(show, CHANNEL_LAYER="redis-pubsub")

        assert classic.stdout.strip() == "channels_redis.core.RedisChannelLayer", classic.stderr
        assert pubsub.stdout.strip() == "channels_redis.pubsub.RedisPubSubChannelLayer", pubsub.stderr

    def test_well_formed_values_are_used(self):
        result = _python(
            SETUP
            + "; from django.conf import settings as s"
            + "; print(s.DEBUG, s.CHAT2PAY_CLICK_WINDOW_SECONDS, s.CHAT2PAY_PAY_WINDOW_SECONDS,"
            + " s.ALLOWED_HOSTS, s.CSRF_TRUSTED_ORIGINS, s.CHAT2PAY_DEFAULT_CURRENCY)",
            DEBUG="yes",
            CHAT2PAY_CLICK_WINDOW_SECONDS="60",
            CHAT2PAY_PAY_WINDOW_SECONDS="120",
            ALLOWED_HOSTS="desk.example.com,.example.org",
            CSRF_TRUSTED_ORIGINS="https://desk.example.com",
            CHAT2PAY_DEFAULT_CURRENCY="usd",
        )

        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[0] == (
            "True 60 120 ['desk.example.com', '.example.org'] ['https://desk.example.com'] USD"
        )

    def test_production_defaults_are_safe_when_only_the_essentials_are_set(self):
        result = _python(
            SETUP
            + "; from django.conf import settings as s"
            + "; print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
            + " s.SECURE_HSTS_SECONDS > 0, s.CHAT2PAY_CLICK_WINDOW_SECONDS, s.CHAT2PAY_PAY_WINDOW_SECONDS)",
            **_production(DEBUG=None, CHAT2PAY_CLICK_WINDOW_SECONDS=None, CHAT2PAY_PAY_WINDOW_SECONDS=None),
        )

        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[0] == "False True True True True 300 900"


class TestDjangoChecks:
    def test_check_deploy_is_clean_with_production_values(self):
        result = _manage("check", "--deploy", "--fail-level", "WARNING", **_production())

        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "WARNINGS" not in output
        assert "System check identified some issues" not in output
        assert "System check identified no issues" in output

    @pytest.mark.django_db
    def test_models_and_migrations_agree(self):
        out = StringIO()

        # Raises SystemExit(1) when a model change has no migration.
        call_command("makemigrations", "--check", "--dry-run", stdout=out)

        assert "No changes detected" in out.getvalue()
