"""Domain records <-> JSON-ready data, for stores and caches (never for the API, which has its
own schema). Decoding is driven by the dataclasses' own type hints, so a record round-trips
exactly, nested value objects and tuples included."""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_data(value: Any) -> Any:
    """A record (or anything inside one) as dicts, lists, strings, numbers, booleans, None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def from_data(cls: type[T], data: Any) -> T:
    """The inverse of `to_data` for the dataclass `cls`."""
    return typing.cast(T, _decode(cls, data))


def _decode(hint: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(options[0], data)  # records only use `X | None`
    if origin is tuple:
        return tuple(_decode(typing.get_args(hint)[0], item) for item in data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        return hint(**{name: _decode(hints[name], data[name]) for name in hints if name in data})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    return data


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in names}
