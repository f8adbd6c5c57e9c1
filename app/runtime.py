"""Runtime: every long-lived collaborator of a running server, built and closed in one place."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx
import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.break_glass import BreakGlassLog
from app.auth.decisions import Decisions
from app.auth.jwks import KeySet
from app.auth.policy import Policy, load_policy
from app.auth.verified import VerifiedTokens
from app.cache.factory import response_backend, source_cache
from app.cache.purge import CachePurger
from app.cache.response import ResponseCache
from app.identity.index import PatientIndex
from app.settings import DEFAULT_HASH_KEY, Settings
from app.sources.registry import SourceRegistry, build_sources
from app.store import create_engine
from resolvers.context import Services
from resolvers.pagination import PageLimits
from schema.build import build_schema
from schema.patient import FIELD_OWNERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    schema: strawberry.Schema
    keyset: KeySet
    engine: AsyncEngine
    registry: SourceRegistry
    services: Services
    policy: Policy
    break_glass_log: BreakGlassLog
    response_cache: ResponseCache | None  # None when [cache] response_ttl_seconds = 0
    verified_tokens: VerifiedTokens
    decisions: Decisions
    caches: CachePurger  # purging the response and source caches per patient


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, transports: Mapping[str, httpx.AsyncBaseTransport] | None = None
) -> AsyncIterator[Runtime]:
    purger: CachePurger | None = None
    engine = create_engine(settings.store.url)
    index = PatientIndex(
        engine, settings.identity.link_identifier_systems, settings.identity.hash_key
    )
    sources_cache = source_cache(settings)
    registry = build_sources(
        settings.sources,
        engine=engine,
        index=index,
        transports=transports,
        source_cache=sources_cache,
    )
    try:
        await index.create_tables()
        await registry.start()
        if settings.identity.hash_key == DEFAULT_HASH_KEY:
            log.warning("identity.hash_key is the built-in default: set a secret of your own")
        auth = settings.auth
        keyset = KeySet(
            path=auth.jwks_file,
            url=auth.jwks_url,
            cache_seconds=auth.jwks_cache_seconds,
            min_refresh_seconds=auth.jwks_min_refresh_seconds,
            timeout_seconds=auth.jwks_timeout_seconds,
        )
        policy = load_policy(settings.auth.policy_file, FIELD_OWNERS)
        limits = PageLimits(settings.graphql.default_page_size, settings.graphql.max_page_size)
        schema = build_schema(
            introspection=settings.server.introspection, policy=policy, page_limits=limits
        )
        response_cache = _response_cache(settings, schema)
        purger = CachePurger(
            response_cache.backend if response_cache else None, sources_cache, index
        )
        for lab in registry.lab_sources:
            lab.results_arrived = purger.purge_responses
        services = Services(
            patient_sources=registry.patient_sources,
            record_sources=registry.record_sources,
            person_sources=registry.person_sources,
            index=index,
            page_limits=PageLimits(
                settings.graphql.default_page_size, settings.graphql.max_page_size
            ),
            caches=purger,
        )
        yield Runtime(
            settings,
            schema,
            keyset,
            engine,
            registry,
            services,
            policy,
            BreakGlassLog(),
            response_cache,
            VerifiedTokens(max_age=settings.auth.verified_token_seconds),
            Decisions(policy),
            purger,
        )
    finally:
        await registry.aclose()
        if purger is not None:
            await purger.aclose()
        elif sources_cache is not None:
            await sources_cache.backend.aclose()
        await engine.dispose()


def _response_cache(settings: Settings, schema: strawberry.Schema) -> ResponseCache | None:
    cache = settings.cache
    backend = response_backend(cache)
    if backend is None:
        return None
    return ResponseCache(
        backend,
        schema._schema,
        ttl=cache.response_ttl_seconds,
        ttl_by_type=cache.response_ttl_by_type,
    )
