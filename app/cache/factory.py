"""Builds the configured backends: one namespace for responses, one for upstream data. The
server and `patientgraph cache purge` build them the same way, so both reach the same keys."""

from __future__ import annotations

from app.cache.backend import CacheBackend
from app.cache.memory import MemoryCache
from app.cache.redis_backend import RedisCache
from app.cache.sources import MAX_STORE_SECONDS, SourceCache
from app.settings import CacheSettings

RESPONSE_TTL_CAP = 3600.0  # the longest entries may live (the settings' bounds)
SOURCE_TTL_CAP = float(MAX_STORE_SECONDS)  # tag sets must outlive every entry


def make_backend(settings: CacheSettings, *, namespace: str, max_ttl: float) -> CacheBackend:
    if settings.backend == "redis":
        return RedisCache(
            settings.redis_url, prefix=settings.key_prefix, namespace=namespace, max_ttl=max_ttl
        )
    return MemoryCache(max_entries=settings.max_entries, max_bytes=settings.max_bytes)


def response_backend(settings: CacheSettings) -> CacheBackend | None:
    """None when the response cache is off (`response_ttl_seconds = 0`)."""
    if settings.response_ttl_seconds <= 0:
        return None
    return make_backend(settings, namespace="response", max_ttl=RESPONSE_TTL_CAP)


def source_cache(settings: CacheSettings, hash_key: str) -> SourceCache | None:
    """None when the source cache is off (`source_ttl_seconds = 0`). Keys and tags are keyed
    hashes under `hash_key` (`Settings.cache_hash_key`), so the server and `cache purge` must
    share it."""
    if settings.source_ttl_seconds <= 0:
        return None
    backend = make_backend(settings, namespace="source", max_ttl=SOURCE_TTL_CAP)
    return SourceCache(backend, settings.source_ttl_seconds, hash_key=hash_key)
