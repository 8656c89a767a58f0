"""Django settings of the test provider: sqlite in the directory the harness gives, no sessions.

Token lifetimes are per client (`LIFETIMES`, by application name) through oauthlib's callable
`token_expires_in`, so one provider can issue tokens of a few seconds and of several minutes.
"""

from __future__ import annotations

import os
from typing import Any

LIFETIMES = {"short": 4}
DEFAULT_LIFETIME = 300


def expires_in(request: Any) -> int:
    return LIFETIMES.get(getattr(request.client, "name", ""), DEFAULT_LIFETIME)


SECRET_KEY = "test-provider-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "oauth2_provider"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "oauth_provider.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("OAUTH_PROVIDER_DB", ":memory:"),
        # A throwaway database: no fsync per issued token on a busy disk.
        "OPTIONS": {"init_command": "PRAGMA synchronous=OFF; PRAGMA journal_mode=MEMORY;"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
# Client secrets and the user's password are hashed with this: fast, for a throwaway database.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "read", "write": "write"},
    "DEFAULT_SCOPES": ["read"],
    "EXTRA_SERVER_KWARGS": {"token_expires_in": expires_in},
    # The password grant is discouraged by RFC 9700, and still what many APIs offer.
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": False,
}
