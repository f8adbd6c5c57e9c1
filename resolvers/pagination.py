"""Connections: `first`/`after` over an already-ordered list, with opaque offset cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from resolvers.errors import UserInputError

T = TypeVar("T")
CURSOR_PREFIX = "o:"


@dataclass(frozen=True, slots=True)
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    nodes: Sequence[T]
    page_info: PageInfo
    total_count: int
    withheld: int = 0


@dataclass(frozen=True, slots=True)
class PageLimits:
    default: int
    maximum: int


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(CURSOR_PREFIX):
            raise ValueError
        offset = int(raw[len(CURSOR_PREFIX) :])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise UserInputError("'after' is not a cursor returned by this API") from None
    if offset < 0:
        raise UserInputError("'after' is not a cursor returned by this API")
    return offset


def page_size(first: int | None, limits: PageLimits) -> int:
    if first is None:
        return limits.default
    if first < 0 or first > limits.maximum:
        raise UserInputError(f"'first' must be between 0 and {limits.maximum}")
    return first


def paginate(
    items: Sequence[T],
    first: int | None,
    after: str | None,
    limits: PageLimits,
    *,
    withheld: int = 0,
) -> Page[T]:
    size = page_size(first, limits)
    start = decode_cursor(after) + 1 if after else 0
    nodes = items[start : start + size]
    end = start + len(nodes) - 1
    return Page(
        nodes=nodes,
        page_info=PageInfo(
            has_next_page=start + size < len(items),
            end_cursor=encode_cursor(end) if nodes else None,
        ),
        total_count=len(items),
        withheld=withheld,
    )
