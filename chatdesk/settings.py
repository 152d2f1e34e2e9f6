"""Chat Desk settings: one module, driven by environment variables (12-factor), strict about bad values.

Production defaults are safe (DEBUG off, secure cookies, HSTS); the embedded mode of `make run` only sets
DATABASE_URL / REDIS_URL / DEBUG / SECRET_KEY for a local desk.
"""

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
import phonenumbers
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class StrictEnv(environ.Env):
    """django-environ, but a malformed value stops start-up with ImproperlyConfigured naming the variable.

    Plain django-environ raises a bare ValueError for `PORT=http` and reads `DEBUG=ture` as False.
    """

    BOOLEAN_FALSE_STRINGS = ("false", "off", "no", "n", "0", "")

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError as error:
            raise ImproperlyConfigured(f"{var} is malformed: {error}") from None

    @classmethod
    def parse_value(cls, value, cast):
        if cast is bool and isinstance(value, str):
            if value.strip().lower() not in {*cls.BOOLEAN_TRUE_STRINGS, *cls.BOOLEAN_FALSE_STRINGS}:
                raise ValueError(f"{value!r} is not true or false")
        return super().parse_value(value, cast)


env = StrictEnv()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured("Set SECRET_KEY (make run and make test generate one under ./var/).")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PORT = env.int("PORT", default=8000)
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Set ALLOWED_HOSTS to the host names the desk is served on.")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "desk",
    "payments",
    "supervisor",
    "ninja",  # serves the API docs page's assets locally
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chatdesk.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "chatdesk.urls"
ASGI_APPLICATION = "chatdesk.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "desk.access.role_context",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/chatdesk")}
# Under ASGI a persistent connection leaks (Django ticket 33497): close per request (the pool needs 0 too).
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# psycopg's connection pool, one per process: Django hands a connection back to it where it used to close
# one, so a websocket connect or a pushed card no longer opens a new PostgreSQL connection (bench B1-B3,
# docs/performance.md). Daphne runs consumer DB steps on one thread and each HTTP request on its own, so a
# few connections serve a web process; past MAX_SIZE a caller waits (at most 10 s) instead of opening more.
# A Celery worker keeps its pool for CELERY_DB_REUSE_MAX tasks (below). Keep processes × MAX_SIZE under
# PostgreSQL's max_connections; 0 = no pool.
DATABASE_POOL_MIN_SIZE = env.int("DATABASE_POOL_MIN_SIZE", default=1)
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=10)
if DATABASE_POOL_MAX_SIZE < 0 or not 0 <= DATABASE_POOL_MIN_SIZE <= max(1, DATABASE_POOL_MAX_SIZE):
    raise ImproperlyConfigured(
        "DATABASE_POOL_MAX_SIZE must be 0 (no pool) or more, and DATABASE_POOL_MIN_SIZE 0 up to it."
    )
if DATABASE_POOL_MAX_SIZE:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_MIN_SIZE,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": 10,
    }
    # The pool checks a connection before handing it out (psycopg_pool's check_connection), so one the
    # server dropped (restart, idle timeout) is replaced instead of failing a request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if DATABASES["default"].get("ENGINE") != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be a PostgreSQL URL, e.g. postgres://user@host/chatdesk.")

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("REDIS_URL must be a redis://, rediss:// or unix:// URL.")

CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

# Redis connections one process's channel layer may open at once (group_add/group_send of concurrent sockets).
CHANNEL_LAYER_MAX_CONNECTIONS = env.int("CHANNEL_LAYER_MAX_CONNECTIONS", default=2000)
# Every consumer waits in a blocking BZPOPMIN of up to 5 s (channels_redis `brpop_timeout`); redis-py 8 cuts
# any read at 5 s by default, which tore down idle sockets every ~5 s (channels_redis#422): the read timeout
# must outlast the blocking pop. redis-py 8 caps an async pool at 100 connections and then fails at once
# (MaxConnectionsError): a burst of 1,000 desks (re)connecting made 92 % of the handshakes fail (bench B1/B2).
CHANNEL_LAYER_HOSTS = [
    {"address": REDIS_URL, "socket_timeout": 15, "max_connections": CHANNEL_LAYER_MAX_CONNECTIONS}
]
# Messages a web process's sockets may have waiting in Redis (channels_redis keeps one queue per process for
# all its sockets); past it, sends are dropped and the pages catch up at their next ping, up to 25 s later.
# A mass expiry sends one hint per open conversation at once: 10,000 due in one second overflowed 1,500 (B4).
CHANNEL_LAYER_CAPACITY = env.int("CHANNEL_LAYER_CAPACITY", default=20000)
# Which channels_redis layer carries the pushes: `redis` (RedisChannelLayer, lists per channel, the default)
# or `redis-pubsub` (RedisPubSubChannelLayer: beta, at-most-once). Pushes are hints either way (the page
# re-reads on reconnect and on every ping), so the choice is a question of speed and memory, measured with
# `make bench BENCH_ARGS="--ab CHANNEL_LAYER=redis,redis-pubsub"` (docs/performance.md).
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="redis")
if CHANNEL_LAYER == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": CHANNEL_LAYER_HOSTS,
                "capacity": CHANNEL_LAYER_CAPACITY,
                "expiry": 30,
                # Sockets re-join their groups on every client ping (25 s; a hidden tab's timers may slow
                # to one a minute), well inside this window (B10). A restarted process's sockets lapse
                # within it, so sends stop filling its dead queue (up to CHANNEL_LAYER_CAPACITY) within
                # 5 minutes, not 24 h.
                "group_expiry": 300,
            },
        },
    }
elif CHANNEL_LAYER == "redis-pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": CHANNEL_LAYER_HOSTS},
        },
    }
else:
    raise ImproperlyConfigured(f"CHANNEL_LAYER must be redis or redis-pubsub, not {CHANNEL_LAYER!r}.")

# --- Celery --------------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = 60
CELERY_TASK_SOFT_TIME_LIMIT = 45
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes a prefork worker's database connections, and with them its connection pool,
# before and after every task unless this is set; then it does so once per this many tasks. Reopening the
# pool per task cost the worker most of its rate (docs/performance.md, product change 19). Connections still
# go back to the pool between tasks (chatdesk.celery.hand_back_database_connections): a broken one is dropped.
CELERY_DB_REUSE_MAX = 100
CELERY_BEAT_SCHEDULER = "chatdesk.celery:HeartbeatScheduler"
CELERY_BEAT_SCHEDULE: dict = {}
# Task modules outside an app's tasks.py (autodiscovery finds only those).
CELERY_IMPORTS = ["desk.messaging.tasks"]
# How often the worker and beat write their heartbeats, and how old one may be before /healthz says down.
HEARTBEAT_INTERVAL_SECONDS = env.int("HEARTBEAT_INTERVAL_SECONDS", default=5)
HEARTBEAT_STALE_AFTER_SECONDS = env.int("HEARTBEAT_STALE_AFTER_SECONDS", default=30)

# --- Auth ----------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)
# Django's backend behind a failed-login throttle (chatdesk.throttling), on every login form (admin too).
AUTHENTICATION_BACKENDS = ["chatdesk.throttling.ThrottledModelBackend"]

# --- Rate limits (django-ratelimit, counted in Redis through the default cache; chatdesk/throttling.py) --
# Rates are "<count>/<period>", period s, m, h or d with an optional multiplier, e.g. "20/10m".
RATELIMIT_UNKNOWN_TOKENS = env.str("RATELIMIT_UNKNOWN_TOKENS", default="20/10m")
RATELIMIT_LOGIN_FAILURES = env.str("RATELIMIT_LOGIN_FAILURES", default="10/15m")
RATELIMIT_CHAT_STARTS = env.str("RATELIMIT_CHAT_STARTS", default="20/h")
# The request header holding the client address; behind a proxy, one the proxy sets (e.g. HTTP_X_REAL_IP).
RATELIMIT_IP_META_KEY = env.str("RATELIMIT_IP_META_KEY", default="REMOTE_ADDR")
for _name in ("RATELIMIT_UNKNOWN_TOKENS", "RATELIMIT_LOGIN_FAILURES", "RATELIMIT_CHAT_STARTS"):
    if not re.fullmatch(r"[1-9]\d*/\d*[smhd]", globals()[_name]):
        raise ImproperlyConfigured(f"{_name} must be a rate such as 20/10m.")

# --- Security (safe production defaults; the embedded DEBUG desk relaxes only what plain HTTP needs) ----
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# /healthz is probed over plain HTTP by load balancers and process supervisors.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# --- I18n, static ----------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Customer link tokens and phone numbers never reach a log line in full (chatdesk/logredact.py).
    "filters": {
        "redact_secrets": {"()": "chatdesk.logredact.RedactSecretsFilter"},
        # The worker's and beat's "nothing to do" lines of the sweeps that run every few seconds.
        "quiet_frequent_sweeps": {"()": "chatdesk.logquiet.QuietFrequentSweepsFilter"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["quiet_frequent_sweeps", "redact_secrets"],
        },
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false", "redact_secrets"],
        },
    },
    # Django's default "django" logger also prints to its own console handler when DEBUG is on: unformatted,
    # and past the redaction (full tokens). Its lines reach the root's console through propagation instead;
    # the error mails to ADMINS are Django's default, kept.
    "loggers": {"django": {"handlers": ["mail_admins"], "level": "INFO"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO").upper()},
}
if LOGGING["root"]["level"] not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL.")

# --- Desk ------------------------------------------------------------------------------------------------
# Longest message body an agent or customer may send.
DESK_MESSAGE_MAX_LENGTH = env.int("DESK_MESSAGE_MAX_LENGTH", default=4000)
# An open desk socket re-reads its user, session and role at once when they change through the app (logout,
# password, deactivation, groups: desk/signals.py), and at a ping at least this often for changes made behind
# the app's back (raw SQL, an expired session). Between those, a ping costs at most one query (its cards).
DESK_ACCESS_RECHECK_SECONDS = env.int("DESK_ACCESS_RECHECK_SECONDS", default=300)
# Region used to read phone numbers typed without a country code.
DESK_DEFAULT_PHONE_REGION = env.str("DESK_DEFAULT_PHONE_REGION", default="ZA").upper()
if DESK_DEFAULT_PHONE_REGION not in phonenumbers.SUPPORTED_REGIONS:
    raise ImproperlyConfigured("DESK_DEFAULT_PHONE_REGION must be a two-letter region code such as ZA or US.")

# --- Chat 2 Pay ------------------------------------------------------------------------------------------
CHAT2PAY_CLICK_WINDOW_SECONDS = env.int("CHAT2PAY_CLICK_WINDOW_SECONDS", default=300)
CHAT2PAY_PAY_WINDOW_SECONDS = env.int("CHAT2PAY_PAY_WINDOW_SECONDS", default=900)
CHAT2PAY_DEFAULT_CURRENCY = env.str("CHAT2PAY_DEFAULT_CURRENCY", default="ZAR").upper()
if not re.fullmatch(r"[A-Z]{3}", CHAT2PAY_DEFAULT_CURRENCY):
    raise ImproperlyConfigured("CHAT2PAY_DEFAULT_CURRENCY must be an ISO 4217 code such as ZAR or USD.")
# The gateway new requests use (payments.gateways); "sandbox" is the built-in test gateway.
CHAT2PAY_GATEWAY = env.str("CHAT2PAY_GATEWAY", default="sandbox")
# The largest amount one request may ask for, in the currency's major unit: a guard against typos.
try:
    CHAT2PAY_MAX_AMOUNT = Decimal(env.str("CHAT2PAY_MAX_AMOUNT", default="1000000"))
except InvalidOperation:
    raise ImproperlyConfigured("CHAT2PAY_MAX_AMOUNT must be a number, e.g. 1000000.") from None
if not CHAT2PAY_MAX_AMOUNT.is_finite() or CHAT2PAY_MAX_AMOUNT <= 0:
    raise ImproperlyConfigured("CHAT2PAY_MAX_AMOUNT must be a positive number.")
# Where customers and gateways reach this desk (links in messages, webhook URLs); default: the request's host.
CHAT2PAY_PUBLIC_BASE_URL = env.str("CHAT2PAY_PUBLIC_BASE_URL", default="")
# The sandbox gateway's webhook signing secrets, comma-separated during a rotation (default: from SECRET_KEY),
# and where it posts its webhooks (default: /webhooks/sandbox/ on the host the customer paid on).
CHAT2PAY_SANDBOX_WEBHOOK_SECRETS = env.list("CHAT2PAY_SANDBOX_WEBHOOK_SECRETS", default=[])
CHAT2PAY_SANDBOX_WEBHOOK_URL = env.str("CHAT2PAY_SANDBOX_WEBHOOK_URL", default="")
# How old a signed webhook may be before it counts as a replay (Stripe's default tolerance).
CHAT2PAY_WEBHOOK_TOLERANCE_SECONDS = env.int("CHAT2PAY_WEBHOOK_TOLERANCE_SECONDS", default=300)
# How often beat runs the expiry sweep: a due row waits up to this long before a sweep starts on it. Every
# 0.5 s, 1,000 requests due at once under load are all expired within the second (p99 1.5 -> 0.9 s;
# docs/performance.md, product change 27), for about 1.4 % of a core more on the worker's host when idle.
CHAT2PAY_SWEEP_INTERVAL_SECONDS = env.float("CHAT2PAY_SWEEP_INTERVAL_SECONDS", default=0.5)
if CHAT2PAY_SWEEP_INTERVAL_SECONDS <= 0:
    raise ImproperlyConfigured("CHAT2PAY_SWEEP_INTERVAL_SECONDS must be a positive number of seconds.")
CELERY_BEAT_SCHEDULE["chat2pay-expire-due-requests"] = {
    "task": "payments.tasks.expire_due_payment_requests_task",
    "schedule": CHAT2PAY_SWEEP_INTERVAL_SECONDS,
    # A sweep queued while no worker ran is stale once one starts; the next sweep covers the same rows.
    "options": {"expires": max(5.0, 5 * CHAT2PAY_SWEEP_INTERVAL_SECONDS)},
}
# --- Payment gateways (docs/gateways.md) -------------------------------------------------------------------
# The sandbox takes no real money: with DEBUG off a system check refuses it unless this says it is meant.
CHAT2PAY_ALLOW_SANDBOX = env.bool("CHAT2PAY_ALLOW_SANDBOX", default=False)
# The sandbox as a chaos tool, comma-separated: duplicate, reorder, delay, drop_then_retry,
# complete_before_expire, decline, fail_refunds (payments.gateways.sandbox.CHAOS).
CHAT2PAY_SANDBOX_CHAOS = [knob.strip().lower() for knob in env.list("CHAT2PAY_SANDBOX_CHAOS", default=[])]
# With `delay`: how long after the pay deadline the sandbox delivers a payment's webhook.
CHAT2PAY_SANDBOX_DELAY_SECONDS = env.int("CHAT2PAY_SANDBOX_DELAY_SECONDS", default=60)
# Stripe Checkout: the secret (or restricted) API key, and the endpoint's signing secrets (whsec_...),
# comma-separated while a rotation overlaps.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.list("STRIPE_WEBHOOK_SECRET", default=[])
STRIPE_API_BASE = "https://api.stripe.com"  # tests point the library at a local stand-in
STRIPE_TIMEOUT_SECONDS = 20
# The reconciler asks Stripe about requests this long past their pay deadline, up to the lookback.
CHAT2PAY_RECONCILE_AFTER_SECONDS = env.int("CHAT2PAY_RECONCILE_AFTER_SECONDS", default=120)
CHAT2PAY_RECONCILE_LOOKBACK_HOURS = env.int("CHAT2PAY_RECONCILE_LOOKBACK_HOURS", default=72)
CELERY_BEAT_SCHEDULE["chat2pay-reconcile-stripe"] = {
    "task": "payments.tasks.reconcile_stripe_checkouts_task",
    "schedule": 60.0,
    "options": {"expires": 120.0},
}

# --- Integrations: REST API and outbound webhooks (api/, docs/api.md) -------------------------------------
# Requests one API key may make per minute (counted in Redis, across all web processes).
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)
# How long an Idempotency-Key and its stored response are kept (Stripe keeps them 24 hours; never less).
API_IDEMPOTENCY_KEY_HOURS = env.int("API_IDEMPOTENCY_KEY_HOURS", default=24)
if API_IDEMPOTENCY_KEY_HOURS < 24:
    raise ImproperlyConfigured("API_IDEMPOTENCY_KEY_HOURS must be at least 24.")
# How long a webhook receiver may take to answer; must end well inside the Celery task's time limit.
API_WEBHOOK_TIMEOUT_SECONDS = env.int("API_WEBHOOK_TIMEOUT_SECONDS", default=10)
if not 0 < API_WEBHOOK_TIMEOUT_SECONDS < CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"API_WEBHOOK_TIMEOUT_SECONDS must be between 1 and {CELERY_TASK_SOFT_TIME_LIMIT - 1}."
    )
# How long a webhook is retried (exponential backoff); an endpoint failing all attempts this long is disabled.
API_WEBHOOK_RETRY_HOURS = env.int("API_WEBHOOK_RETRY_HOURS", default=72)
# How often beat looks for webhook deliveries that are due (retries, and first attempts whose task was lost).
API_WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("API_WEBHOOK_SWEEP_INTERVAL_SECONDS", default=10.0)
if API_WEBHOOK_SWEEP_INTERVAL_SECONDS <= 0:
    raise ImproperlyConfigured("API_WEBHOOK_SWEEP_INTERVAL_SECONDS must be a positive number of seconds.")
CELERY_BEAT_SCHEDULE["api-deliver-due-webhooks"] = {
    "task": "api.tasks.deliver_due_webhooks_task",
    "schedule": API_WEBHOOK_SWEEP_INTERVAL_SECONDS,
    "options": {"expires": max(5.0, 5 * API_WEBHOOK_SWEEP_INTERVAL_SECONDS)},
}
CELERY_BEAT_SCHEDULE["api-purge-idempotency-keys"] = {
    "task": "api.tasks.purge_idempotency_keys_task",
    "schedule": 3600.0,
    "options": {"expires": 1800.0},
}
# Who is told when a webhook endpoint is disabled (Django's mail_admins), comma-separated addresses, and how
# mail leaves (django-environ's EMAIL_URL, e.g. smtp+tls://user:password@smtp.example.com:587).
ADMINS = [(address, address) for address in env.list("ADMINS", default=[])]
SERVER_EMAIL = env.str("SERVER_EMAIL", default="chatdesk@localhost")
globals().update(env.email_url("EMAIL_URL", default="consolemail://"))

# --- Messaging channels: WhatsApp and SMS (desk/messaging/, docs/channels.md) ----------------------------
# Which provider carries WhatsApp conversations: "cloud" (Meta's WhatsApp Cloud API) or "clickatell".
# SMS always goes through Clickatell. A channel whose provider has no credentials is not connected.
MESSAGING_WHATSAPP_PROVIDER = env.str("MESSAGING_WHATSAPP_PROVIDER", default="cloud").lower()
if MESSAGING_WHATSAPP_PROVIDER not in {"cloud", "clickatell"}:
    raise ImproperlyConfigured("MESSAGING_WHATSAPP_PROVIDER must be cloud or clickatell.")
# WhatsApp Cloud API: a system user's access token, the sending phone number's id, the app secret that signs
# webhooks (X-Hub-Signature-256) and the verify token of the subscription handshake.
WHATSAPP_ACCESS_TOKEN = env.str("WHATSAPP_ACCESS_TOKEN", default="")
WHATSAPP_PHONE_NUMBER_ID = env.str("WHATSAPP_PHONE_NUMBER_ID", default="")
WHATSAPP_APP_SECRET = env.str("WHATSAPP_APP_SECRET", default="")
WHATSAPP_VERIFY_TOKEN = env.str("WHATSAPP_VERIFY_TOKEN", default="")
WHATSAPP_API_BASE = env.str("WHATSAPP_API_BASE", default="https://graph.facebook.com/v21.0").rstrip("/")
# Approved message templates used outside the 24-hour customer-service window (both WhatsApp providers).
WHATSAPP_TEMPLATE_PAYMENT_REQUEST = env.str("WHATSAPP_TEMPLATE_PAYMENT_REQUEST", default="payment_request")
WHATSAPP_TEMPLATE_CANCEL_NOTICE = env.str(
    "WHATSAPP_TEMPLATE_CANCEL_NOTICE", default="payment_request_canceled"
)
WHATSAPP_TEMPLATE_LANGUAGE = env.str("WHATSAPP_TEMPLATE_LANGUAGE", default="en")
# Clickatell One API: the integration's API key, and the shared secret its callback URLs carry.
CLICKATELL_API_KEY = env.str("CLICKATELL_API_KEY", default="")
CLICKATELL_WEBHOOK_SECRET = env.str("CLICKATELL_WEBHOOK_SECRET", default="")
CLICKATELL_API_BASE = env.str("CLICKATELL_API_BASE", default="https://platform.clickatell.com").rstrip("/")
# Longest SMS sent, in segments (153 GSM-7 or 67 UCS-2 characters each once a text needs more than one).
CLICKATELL_SMS_MAX_SEGMENTS = env.int("CLICKATELL_SMS_MAX_SEGMENTS", default=6)
# Outbox: how long one provider call may take, how many attempts before a message counts as undeliverable,
# and how often beat re-queues deliveries that are due (retries, and first attempts whose task was lost).
MESSAGING_TIMEOUT_SECONDS = env.int("MESSAGING_TIMEOUT_SECONDS", default=10)
MESSAGING_MAX_ATTEMPTS = env.int("MESSAGING_MAX_ATTEMPTS", default=8)
MESSAGING_SWEEP_INTERVAL_SECONDS = env.float("MESSAGING_SWEEP_INTERVAL_SECONDS", default=15.0)
if MESSAGING_SWEEP_INTERVAL_SECONDS <= 0:
    raise ImproperlyConfigured("MESSAGING_SWEEP_INTERVAL_SECONDS must be a positive number of seconds.")
if not 0 < MESSAGING_TIMEOUT_SECONDS < CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"MESSAGING_TIMEOUT_SECONDS must be between 1 and {CELERY_TASK_SOFT_TIME_LIMIT - 1}."
    )
CELERY_BEAT_SCHEDULE["messaging-deliver-due-outbound"] = {
    "task": "desk.messaging.tasks.deliver_due_outbound_task",
    "schedule": MESSAGING_SWEEP_INTERVAL_SECONDS,
    "options": {"expires": max(5.0, 5 * MESSAGING_SWEEP_INTERVAL_SECONDS)},
}

# --- Webhook inboxes (payments GatewayWebhookEvent, desk.messaging InboundWebhookEvent) ---------------------
# Processed events are kept this many days, then beat purges them hourly. A kept row is what makes a late
# redelivery a no-op and providers redeliver for days (Stripe up to 3, WhatsApp up to 7), so never fewer than
# 7. Events not processed yet, flagged unmatched, or behind a payment exception are never purged.
WEBHOOK_INBOX_RETENTION_DAYS = env.int("WEBHOOK_INBOX_RETENTION_DAYS", default=30)
if WEBHOOK_INBOX_RETENTION_DAYS < 7:
    raise ImproperlyConfigured("WEBHOOK_INBOX_RETENTION_DAYS must be at least 7.")
CELERY_BEAT_SCHEDULE["payments-purge-processed-webhook-events"] = {
    "task": "payments.tasks.purge_processed_webhook_events_task",
    "schedule": 3600.0,
    "options": {"expires": 1800.0},
}
CELERY_BEAT_SCHEDULE["messaging-purge-processed-inbound-events"] = {
    "task": "desk.messaging.tasks.purge_processed_inbound_events_task",
    "schedule": 3600.0,
    "options": {"expires": 1800.0},
}

for _name in (
    "CHAT2PAY_CLICK_WINDOW_SECONDS",
    "CHAT2PAY_PAY_WINDOW_SECONDS",
    "CHAT2PAY_WEBHOOK_TOLERANCE_SECONDS",
    "CHAT2PAY_SANDBOX_DELAY_SECONDS",
    "CHAT2PAY_RECONCILE_AFTER_SECONDS",
    "CHAT2PAY_RECONCILE_LOOKBACK_HOURS",
    "HEARTBEAT_INTERVAL_SECONDS",
    "HEARTBEAT_STALE_AFTER_SECONDS",
    "SESSION_COOKIE_AGE",
    "DESK_MESSAGE_MAX_LENGTH",
    "CHANNEL_LAYER_MAX_CONNECTIONS",
    "CHANNEL_LAYER_CAPACITY",
    "API_RATE_LIMIT_PER_MINUTE",
    "API_WEBHOOK_RETRY_HOURS",
    "CLICKATELL_SMS_MAX_SEGMENTS",
    "MESSAGING_MAX_ATTEMPTS",
):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be a positive whole number.")
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must be 0 or more.")
if not 0 < PORT < 65536:
    raise ImproperlyConfigured("PORT must be between 1 and 65535.")
