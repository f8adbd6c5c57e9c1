"""The composition root: every long-lived service built from settings, in one place, for
`serve`, `demo` and every CLI command alike (nothing else wires concrete classes together).

- `open_runtime`: the running server's `Runtime` (sources, patient index, store, caches,
  purger, policy, schema, keyset, token and decision memos), closed in reverse on exit.
- `open_purger`: what `patientgraph cache purge` needs (store, index, the shared caches).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import fields

import httpx
import strawberry
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.events import cli_events
from app.audit.trail import AuditTrail
from app.auth.break_glass import BreakGlassLog
from app.auth.decisions import Decisions
from app.auth.fingerprint import Fingerprints
from app.auth.jwks import KeySet
from app.auth.policy import load_policy
from app.auth.verified import VerifiedTokens
from app.cache.backend import CacheBackend
from app.cache.factory import response_backend, source_cache
from app.cache.purge import CachePurger, PurgeCounts
from app.cache.response import ResponseCache
from app.cache.sources import SourceFetcher
from app.domain.common import SourceLink
from app.domain.patients import SourcePatient
from app.identity.index import PatientIndex
from app.identity.matcher import Thresholds
from app.identity.review import IdentityReview
from app.logging import describe_exception
from app.settings import (
    DEFAULT_HASH_KEY,
    AuthSettings,
    CacheSettings,
    GraphQLSettings,
    Settings,
    production_warnings,
)
from app.sources.registry import build_sources
from app.store import create_engine
from app.web.audit import SelectedFields
from app.web.rate_limits import rate_limits
from app.web.state import Runtime
from app.web.trusted_documents import trusted_documents
from resolvers.context import Services
from resolvers.pagination import PageLimits
from schema.build import build_schema
from schema.cost import Budget, CostEstimator, fanout
from schema.limits import DocumentLimits
from schema.patient import FIELD_OWNERS

log = logging.getLogger(__name__)
Ingested = Callable[[SourcePatient], Awaitable[None]]


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, transports: Mapping[str, httpx.AsyncBaseTransport] | None = None
) -> AsyncIterator[Runtime]:
    """`transports` (source id -> httpx transport) puts fakes under sources, for tests."""
    async with contextlib.AsyncExitStack() as stack:
        engine = _engine(stack, settings)
        index = patient_index(settings, engine)
        purger = _purger(stack, settings, index)
        registry = build_sources(
            settings.sources,
            engine=engine,
            transports=transports,
            fetcher_for=lambda source: SourceFetcher(
                source.id,
                purger.sources,
                source.cache_seconds,
                stale_if_error=source.stale_if_error_seconds,
            ),
            on_lab_ingested=lab_ingested(index, purger.purge_responses, purger.purge_searches),
            shared_listeners=settings.server.workers > 1,
        )
        stack.push_async_callback(registry.aclose)
        await index.create_tables()
        await registry.start()
        if settings.identity.hash_key == DEFAULT_HASH_KEY:
            log.warning("identity.hash_key is the built-in default: set a secret of your own")
        for warning in production_warnings(settings.server):
            log.warning("%s", warning)
        policy = load_policy(settings.auth.policy_file, FIELD_OWNERS)
        limits = PageLimits(settings.graphql.default_page_size, settings.graphql.max_page_size)
        schema = build_schema(
            introspection=settings.server.introspection, policy=policy, page_limits=limits
        )
        trail = AuditTrail(engine, settings.audit_hash_key) if settings.audit.enabled else None
        if trail is not None:
            stack.push_async_callback(trail.aclose)
            await trail.create_tables()
        else:
            log.warning("audit.enabled is false: disclosures are not recorded")
        services = Services(
            patient_sources=registry.patient_sources,
            record_sources=registry.record_sources,
            person_sources=registry.person_sources,
            index=index,
            page_limits=limits,
            caches=purger,
            audit=trail,
        )
        limiter = rate_limits(settings.rate_limit, settings.cache)
        stack.push_async_callback(limiter.aclose)
        yield Runtime(
            settings,
            schema,
            keyset(settings.auth),
            engine,
            registry,
            services,
            policy,
            BreakGlassLog(),
            _response_cache(settings.cache, purger.responses, schema),
            Fingerprints(),
            VerifiedTokens(max_age=settings.auth.verified_token_seconds),
            Decisions(policy),
            purger,
            document_limits(settings.graphql),
            limiter,
            CostEstimator(schema._schema, fanout(services), cost_budget(settings.graphql)),
            trusted_documents(
                settings.graphql.trusted_documents, settings.graphql.trusted_documents_file
            ),
            trail,
            SelectedFields(schema._schema),
        )


@contextlib.asynccontextmanager
async def open_purger(settings: Settings) -> AsyncIterator[CachePurger]:
    """The shared caches and the patient index, as `patientgraph cache purge` reaches them."""
    async with contextlib.AsyncExitStack() as stack:
        engine = _engine(stack, settings)
        yield _purger(stack, settings, patient_index(settings, engine))


@contextlib.asynccontextmanager
async def open_identity(
    settings: Settings,
) -> AsyncIterator[tuple[IdentityReview, CachePurger, AuditTrail]]:
    """The patient index's review operations, the shared caches and the audit trail, as
    `patientgraph identity` reaches them from outside the server."""
    async with contextlib.AsyncExitStack() as stack:
        engine = _engine(stack, settings)
        index = patient_index(settings, engine)
        await index.create_tables()
        trail = AuditTrail(engine, settings.audit_hash_key)
        stack.push_async_callback(trail.aclose)
        await trail.create_tables()
        yield IdentityReview(index), _purger(stack, settings, index), trail


@contextlib.asynccontextmanager
async def open_audit(settings: Settings) -> AsyncIterator[AuditTrail]:
    """The configured store's audit trail, as `patientgraph audit` reaches it."""
    async with contextlib.AsyncExitStack() as stack:
        trail = AuditTrail(_engine(stack, settings), settings.audit_hash_key)
        stack.push_async_callback(trail.aclose)
        await trail.create_tables()
        yield trail


async def purge_patient(settings: Settings, patient_id: str, actor: str) -> PurgeCounts:
    """`patientgraph cache purge`: the shared (Redis) caches, from outside the server; the
    purge is on the audit trail before this returns."""
    async with open_identity(settings) as (_, purger, trail):
        counts = await purger.purge_patient(patient_id)
        await trail.record(*cli_events(actor, "cache purge", (patient_id,)))
        return counts


def patient_index(settings: Settings, engine: AsyncEngine) -> PatientIndex:
    identity = settings.identity
    return PatientIndex(
        engine,
        identity.link_identifier_systems,
        identity.hash_key,
        Thresholds(identity.link_threshold, identity.review_threshold),
        identity.identifier_normalisers,
    )


def keyset(auth: AuthSettings) -> KeySet:
    return KeySet(
        path=auth.jwks_file,
        url=auth.jwks_url,
        cache_seconds=auth.jwks_cache_seconds,
        min_refresh_seconds=auth.jwks_min_refresh_seconds,
        timeout_seconds=auth.jwks_timeout_seconds,
    )


def document_limits(graphql: GraphQLSettings) -> DocumentLimits:
    """Each limit is the `[graphql]` setting of the same name."""
    return DocumentLimits(**{f.name: getattr(graphql, f.name) for f in fields(DocumentLimits)})


def cost_budget(graphql: GraphQLSettings) -> Budget:
    return Budget(
        graphql.max_searches, graphql.max_records, graphql.max_patients, graphql.patients_by_role
    )


def lab_ingested(
    index: PatientIndex,
    purge: Callable[[str], Awaitable[None]],
    purge_searches: Callable[[], Awaitable[None]] | None = None,
) -> Ingested:
    """What a lab source does with the patient of a newly stored message, before its ACK: link
    them now (a search links them later otherwise), then purge their cached responses, and
    every cached patient search if they are someone new (an empty search for them would
    otherwise stand). Both are best effort, as the results are stored and the ACK stays AA: a
    failure is logged, and stale answers then last at most their cache lifetime."""

    async def ingested(patient: SourcePatient) -> None:
        source_id = patient.link.source_id
        try:
            (patient_id,), created = await index.link_new([patient])
        except (SQLAlchemyError, OSError) as exc:
            log.error(
                "source %s: linking after ingest failed: %s", source_id, describe_exception(exc)
            )
            return
        try:
            await purge(patient_id)
            if created and purge_searches is not None:
                await purge_searches()
        except Exception as exc:
            log.error(
                "source %s: announcing new results failed: %s", source_id, describe_exception(exc)
            )

    return ingested


def links_of(index: PatientIndex) -> Callable[[str], Awaitable[Sequence[SourceLink]]]:
    async def links(patient_id: str) -> Sequence[SourceLink]:
        return (await index.links_for([patient_id])).get(patient_id, ())

    return links


def _engine(stack: contextlib.AsyncExitStack, settings: Settings) -> AsyncEngine:
    engine = create_engine(settings.store.url)
    stack.push_async_callback(engine.dispose)
    return engine


def _purger(
    stack: contextlib.AsyncExitStack, settings: Settings, index: PatientIndex
) -> CachePurger:
    """Both caches' backends (closed with the stack) and the purger over them."""
    sources = source_cache(settings.cache, settings.cache_hash_key)
    purger = CachePurger(response_backend(settings.cache), sources, links_of(index))
    stack.push_async_callback(purger.aclose)
    return purger


def _response_cache(
    cache: CacheSettings, backend: CacheBackend | None, schema: strawberry.Schema
) -> ResponseCache | None:
    if backend is None:
        return None
    return ResponseCache(
        backend,
        schema._schema,
        ttl=cache.response_ttl_seconds,
        ttl_by_type=cache.response_ttl_by_type,
    )
