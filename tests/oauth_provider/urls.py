"""The provider's token, revocation and introspection endpoints, and a protected API resource."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from django.urls import include, path
from oauth2_provider.oauth2_backends import get_oauthlib_core


def whoami(request: Any) -> JsonResponse:
    """Who the Bearer token was issued to; 401 with RFC 6750's challenge when it is not valid."""
    valid, oauth = get_oauthlib_core().verify_request(request, scopes=[])
    if not valid:
        challenge = 'Bearer error="invalid_token"'
        return JsonResponse(
            {"detail": "invalid token"}, status=401, headers={"WWW-Authenticate": challenge}
        )
    user = oauth.user.username if oauth.user else None
    return JsonResponse(
        {"client": oauth.client.name, "user": user, "scope": oauth.access_token.scope}
    )


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/whoami", whoami),
]
