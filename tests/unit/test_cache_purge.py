"""CachePurger: a patient's responses by tag, their upstream entries by the links it is handed
(the patient index's in the server), and their person queries by PatientGraph id."""

from __future__ import annotations

from collections.abc import Sequence

from app.cache.memory import MemoryCache
from app.cache.purge import CachePurger, PurgeCounts
from app.cache.response import patient_tag
from app.cache.sources import SourceCache, SourceFetcher
from app.domain.common import SourceLink
from app.sources.fetching import Fetched, NotModified

LINKS = {"pg-1": (SourceLink("hospital", "p-1", "Patient"),)}


async def fetch(_etag: str | None) -> Fetched[bytes] | NotModified:
    return Fetched(b"body", b"body")


async def test_purging_a_patient_asks_for_their_links_and_removes_only_theirs() -> None:
    asked: list[str] = []

    async def links(patient_id: str) -> Sequence[SourceLink]:
        asked.append(patient_id)
        return LINKS.get(patient_id, ())

    responses = MemoryCache(max_entries=100, max_bytes=100_000)
    sources = SourceCache(MemoryCache(max_entries=100, max_bytes=100_000), 60)
    hospital = SourceFetcher("hospital", sources)
    await hospital.get("mine", fetch, bytes, patients=["p-1"])
    await hospital.get("theirs", fetch, bytes, patients=["p-2"])
    await responses.set("r1", b"{}", 60, [patient_tag("pg-1")])
    await responses.set("r2", b"{}", 60, [patient_tag("pg-2")])
    purger = CachePurger(responses, sources, links)

    assert await purger.purge_patient("pg-1") == PurgeCounts(responses=1, sources=1)
    assert asked == ["pg-1"]
    assert await responses.get("r1") is None
    assert await responses.get("r2") == b"{}"
    assert await purger.purge_patient("pg-1") == PurgeCounts(0, 0)


async def test_without_a_source_cache_no_links_are_asked_for() -> None:
    async def links(patient_id: str) -> Sequence[SourceLink]:
        raise AssertionError("not needed")

    purger = CachePurger(None, None, links)
    assert await purger.purge_patient("pg-1") == PurgeCounts(0, 0)
