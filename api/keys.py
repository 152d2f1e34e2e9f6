"""API keys: the only code that creates, revokes and checks them.

A key is `cdk_` + 40 random URL-safe characters (about 240 bits). Only its SHA-256 digest is stored: a key
this random needs no slow hash, and a leaked table (or admin screen) reveals no working key. The first 12
characters are kept in the clear as the key's prefix so people can tell keys apart.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .errors import ApiError
from .models import ApiKey

KEY_PREFIX = "cdk_"
PREFIX_LENGTH = 12
# last_used_at is written at most this often per key, so a busy integration does not write on every call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def create_api_key(*, name: str, scope: str, created_by=None) -> tuple[ApiKey, str]:
    """Create a key; returns (record, key). The key itself is shown once and never stored."""
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(ApiKey.Scope.values)}")
    key = KEY_PREFIX + secrets.token_urlsafe(30)
    api_key = ApiKey.objects.create(
        name=name, scope=scope, prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key), created_by=created_by
    )
    return api_key, key


def revoke_api_key(api_key_id: int, *, by=None) -> bool:
    """Revoke a key at once (its next request gets 401); False if it was already revoked."""
    return bool(
        ApiKey.objects.filter(pk=api_key_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=by
        )
    )


def authenticate(key: str) -> ApiKey:
    """The active key behind a bearer token, or ApiError 401 (unknown or revoked). Records last use."""
    api_key = ApiKey.objects.filter(key_hash=hash_key(key)).first() if key.startswith(KEY_PREFIX) else None
    if api_key is None:
        raise ApiError(401, "invalid_api_key", "The API key is not valid.")
    if not api_key.is_active:
        raise ApiError(401, "api_key_revoked", "This API key has been revoked.")
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
