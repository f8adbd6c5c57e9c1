"""The running server's long-lived collaborators, as the web layer sees them: `app.bootstrap`
builds a `Runtime` at start-up and the lifespan keeps it on the app; handlers read it through
`runtime_of`, never through the builder."""

from __future__ import annotations

from dataclasses import dataclass

import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from app.audit.trail import AuditTrail
from app.auth.break_glass import BreakGlassLog
from app.auth.decisions import Decisions
from app.auth.fingerprint import Fingerprints
from app.auth.jwks import KeySet
from app.auth.policy import Policy
from app.auth.verified import VerifiedTokens
from app.cache.purge import CachePurger
from app.cache.response import ResponseCache
from app.settings import Settings
from app.sources.registry import SourceRegistry
from app.web.audit import SelectedFields
from app.web.rate_limits import RateLimits
from app.web.trusted_documents import TrustedDocuments
from resolvers.context import Services
from schema.cost import CostEstimator
from schema.limits import DocumentLimits


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
    fingerprints: Fingerprints  # the response cache's caller digests, per principal
    verified_tokens: VerifiedTokens
    decisions: Decisions
    caches: CachePurger  # purging the response and source caches per patient
    document_limits: DocumentLimits  # checked before a document is validated
    rate_limits: RateLimits
    cost: CostEstimator  # upstream work an operation can cause, against the caller's budget
    trusted_documents: TrustedDocuments
    audit: AuditTrail | None  # None when [audit] enabled = false
    selected_fields: SelectedFields  # what each document selects, for the audit trail


def runtime_of(request: Request) -> Runtime:
    """The Runtime the lifespan put on the app (set before the first request is served)."""
    runtime = request.app.state.runtime
    if not isinstance(runtime, Runtime):
        raise TypeError("the app's lifespan has not set a Runtime")
    return runtime
