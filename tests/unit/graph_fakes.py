"""The GraphQL layer over in-memory sources, for tests that run queries without HTTP or
upstream servers: the demo population mapped once through the FHIR mapping, served by sources
that count their calls and can be made to fail (tests/fakes/memory_source.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from app.auth.policy import Policy, load_policy
from app.auth.principal import Principal
from app.demo.generator import generate_population
from app.demo.runner import ISSUER, ROLE_SCOPES
from app.domain.patients import SSN_SYSTEM
from app.identity.index import PatientIndex
from app.store import create_engine
from resolvers.context import Context, Services
from resolvers.loaders import RequestLoaders
from resolvers.pagination import PageLimits
from schema.patient import FIELD_OWNERS
from tests.fakes.memory_source import InstrumentedMemorySource, demo_sources

POLICY = load_policy(None, FIELD_OWNERS)


def memory_sources(patients: int = 4) -> list[InstrumentedMemorySource]:
    """The demo population's upstreams, mapped as the FHIR connector maps them."""
    return demo_sources(generate_population(patients=patients))


@dataclass
class Graph:
    services: Services
    sources: list[InstrumentedMemorySource]
    policy: Policy = POLICY

    def context(self, role: str = "clinician", *, patient: str | None = None) -> Context:
        principal = Principal(
            "test-user", frozenset({role}), tuple(ROLE_SCOPES[role].split()), patient, None, ISSUER
        )
        access = self.policy.decide(principal)
        return Context(principal, self.services, RequestLoaders(self.services.index), access)


@contextlib.asynccontextmanager
async def memory_graph(tmp_path: Path, patients: int = 4) -> AsyncIterator[Graph]:
    sources = memory_sources(patients)
    engine = create_engine(f"sqlite:///{tmp_path / 'index.db'}")
    index = PatientIndex(engine, (SSN_SYSTEM,), "test-hash-key")
    await index.create_tables()
    try:
        yield Graph(
            Services(
                patient_sources=tuple(sources),
                record_sources=tuple(sources),
                person_sources=(),
                index=index,
                page_limits=PageLimits(20, 100),
            ),
            sources,
        )
    finally:
        await engine.dispose()
