"""Bearer authentication for HTTP requests (contract section 4), with the rate limits that
come before and after it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.auth.jwks import KeySet
from app.auth.principal import Principal
from app.auth.tokens import AuthenticationError, verify_access_token
from app.auth.verified import VerifiedTokens
from app.settings import AuthSettings
from app.web.state import Runtime
from app.web.transport import JSON, json_response, rate_limited
from schema.errors import simple_error

URL_TOKEN_PARAMS = ("access_token", "token", "jwt")


async def authenticate(
    request: Request, settings: AuthSettings, keyset: KeySet, verified: VerifiedTokens
) -> Principal:
    """The caller's Principal, or AuthenticationError. Tokens are accepted only in the
    Authorization header: a URL would put them in proxy and server logs."""
    if any(name in request.query_params for name in URL_TOKEN_PARAMS):
        raise AuthenticationError("Tokens are not accepted in the URL")
    values = request.headers.getlist("authorization")
    if not values:
        raise AuthenticationError("Missing bearer token")
    if len(values) > 1:
        # Proxies and frameworks disagree on which of several wins: accept none.
        raise AuthenticationError("Send exactly one Authorization header")
    header = values[0]
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization must be 'Bearer <token>'")
    token = token.strip()
    known = verified.get(token)
    if known is not None:
        return known
    principal = await verify_access_token(
        token,
        keyset=keyset,
        issuer=settings.issuer,
        audience=settings.audience,
        algorithms=settings.algorithms,
        leeway_seconds=settings.leeway_seconds,
        require_iat=settings.require_iat,
        max_lifetime_seconds=settings.max_token_lifetime_seconds,
    )
    verified.remember(token, principal)
    return principal


async def caller_of(request: Request, runtime: Runtime, media: str = JSON) -> Principal | Response:
    """Who is asking, or the response that refuses them: the address's rate limit (before any
    work, even reading the token), the bearer token (401), then the caller's rate limit."""
    limits = runtime.rate_limits
    if limits.enabled:
        address = request.client.host if request.client is not None else ""
        wait = await limits.address_wait(address)
        if wait is not None:
            return rate_limited(wait, media)
    try:
        principal = await authenticate(
            request, runtime.settings.auth, runtime.keyset, runtime.verified_tokens
        )
    except AuthenticationError as exc:
        return json_response(
            simple_error(str(exc), "UNAUTHENTICATED"),
            401,
            {"www-authenticate": 'Bearer error="invalid_token"'},
            media,
        )
    if limits.enabled:
        wait = await limits.principal_wait(principal)
        if wait is not None:
            return rate_limited(wait, media)
    return principal
