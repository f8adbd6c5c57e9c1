"""The `Cache-Control` directives of an upstream answer, read as a shared cache must (RFC 9111).

PatientGraph's source cache is shared by every caller, so `private` forbids storing like
`no-store` does, and `s-maxage` (meant for shared caches) takes precedence over `max-age`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Directives:
    no_store: bool = False  # `no-store` or `private`: never stored
    no_cache: bool = False  # may be stored, but revalidated before every use
    max_age: float | None = None  # seconds the upstream lets the answer be reused
    must_revalidate: bool = False  # `must-revalidate`/`proxy-revalidate`: never served stale
    stale_if_error: float | None = None  # RFC 5861: seconds it may be served stale on error


def parse(header: str | None) -> Directives:
    """Unknown directives are ignored; a malformed age counts as 0 (stale at once, RFC 9111
    §4.2.1), never as "forever"."""
    names: dict[str, str | None] = {}
    for part in (header or "").split(","):
        name, sep, value = part.strip().partition("=")
        if name:
            names[name.strip().lower()] = value.strip().strip('"') if sep else None
    age = "s-maxage" if "s-maxage" in names else "max-age"
    return Directives(
        no_store="no-store" in names or "private" in names,
        no_cache="no-cache" in names,
        max_age=_seconds(names[age]) if age in names else None,
        must_revalidate="must-revalidate" in names or "proxy-revalidate" in names,
        stale_if_error=_seconds(names["stale-if-error"]) if "stale-if-error" in names else None,
    )


def _seconds(value: str | None) -> float:
    return float(value) if value is not None and value.isdigit() else 0.0


def lifetime(directives: Directives, source_ttl: float) -> float:
    """Seconds an answer is fresh: the source's TTL, shortened (never lengthened) by the
    upstream's own; 0 means "revalidate before every use"."""
    if directives.no_cache:
        return 0.0
    if directives.max_age is None:
        return source_ttl
    return min(source_ttl, directives.max_age)


def stale_if_error(directives: Directives, source_window: float) -> float:
    """Seconds past freshness an answer may stand in for a failing upstream: the source's
    window, shortened (never lengthened) by the upstream's `stale-if-error`, none when it
    must be revalidated."""
    if directives.must_revalidate:
        return 0.0
    if directives.stale_if_error is None:
        return source_window
    return min(source_window, directives.stale_if_error)
