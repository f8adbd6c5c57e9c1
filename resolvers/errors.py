"""Errors resolvers raise on purpose; the schema turns them into coded GraphQL errors."""

from __future__ import annotations


class ClientError(Exception):
    """An error whose message is written for the client (never holds PHI)."""

    code = "BAD_USER_INPUT"


class UserInputError(ClientError):
    code = "BAD_USER_INPUT"


class Forbidden(ClientError):
    """The caller may not see this (the message says what kind of thing, never whose)."""

    code = "FORBIDDEN"
