"""Bearer authentication for HTTP requests (contract section 4)."""

from __future__ import annotations

from starlette.requests import Request

from app.auth.jwks import KeySet
from app.auth.principal import Principal
from app.auth.tokens import AuthenticationError, verify_access_token
from app.auth.verified import VerifiedTokens
from app.settings import AuthSettings

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
