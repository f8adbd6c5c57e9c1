"""The authorization fingerprint: what a response may depend on about its caller, as one digest
a cache can key by without knowing what a principal or an access decision is.

It holds every field of the `Access` the policy decided (types, scopes, confinement, masking,
sensitivity, care team, denied fields: whatever it holds, present and future), plus the token's
patient context (for `me`) and, for a caller confined to one patient, its subject and issuer.
Two callers share a digest only when the policy gives them the same rights over the same
patient context.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from cachetools import LRUCache

from app.auth.policy import Access
from app.auth.principal import Principal

FINGERPRINT_CACHE_SIZE = 4096


def fingerprint(principal: Principal, access: Access) -> Any:
    """What the response may depend on about the caller, canonical (see the module doc)."""
    return {
        "access": _canonical(access),
        "patient": principal.patient,
        "subject": principal.subject if access.confined_to is not None else None,
        "issuer": principal.issuer if access.confined_to is not None else None,
    }


class Fingerprints:
    """Fingerprint digests remembered per principal: its Access is a pure function of it (see
    `app.auth.decisions`). Only for access decided without break-the-glass: an elevated request
    must never be fingerprinted here (the endpoint never caches those)."""

    def __init__(self, max_entries: int = FINGERPRINT_CACHE_SIZE) -> None:
        self._digests: LRUCache[Principal, str] = LRUCache(max_entries)

    def digest(self, principal: Principal, access: Access) -> str:
        found = self._digests.get(principal)
        if found is None:
            material = orjson.dumps(fingerprint(principal, access), option=orjson.OPT_SORT_KEYS)
            found = self._digests[principal] = hashlib.sha256(material).hexdigest()
        return found


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted((_canonical(v) for v in value), key=orjson.dumps)
    if isinstance(value, Mapping):
        return sorted(([k, _canonical(v)] for k, v in value.items()), key=orjson.dumps)
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    return value
