"""Errors resolvers raise on purpose, and the source failures they pass through; the schema
turns them into coded GraphQL errors."""

from __future__ import annotations

from app.sources.errors import SourceError

# A source's failure passes through resolvers as its own error (one coded error per source):
# the schema formats it from here, never from the source adapters.
__all__ = ["ClientError", "Forbidden", "SourceError", "UserInputError"]


class ClientError(Exception):
    """An error whose message is written for the client (never holds PHI)."""

    code = "BAD_USER_INPUT"


class UserInputError(ClientError):
    code = "BAD_USER_INPUT"


class Forbidden(ClientError):
    """The caller may not see this (the message says what kind of thing, never whose)."""

    code = "FORBIDDEN"
