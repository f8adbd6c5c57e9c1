"""Typed access to the per-request Context from Strawberry's Info."""

from __future__ import annotations

from typing import Any

import strawberry

from resolvers.context import Context

Info = strawberry.Info[Context, Any]


def path_of(info: Info) -> tuple[str | int, ...]:
    return tuple(info.path.as_list())
