"""Who a new source record is: the decision, made over the candidates blocking found.

Deterministic first: an identifier of `identity.link_identifier_systems` shared with one person
links to them unless a record of theirs contradicts the newcomer (then it is a conflict: kept
apart, listed for review). Otherwise the Fellegi-Sunter score (`app.identity.scoring`) against
each candidate person (their best-scoring record; any contradicting record vetoes): one person
at or above `link_at` links, several are a conflict, a best score at or above `review_at` is a
possible match (kept apart, listed), anything lower is a new person.

Two records of one source are never linked automatically: a source keeps one record per
person, so a second one sharing an identifier or scoring high is a duplicate for a person to
judge, or two people. This module decides only; `app.identity.index` reads and writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from app.identity.demographics import Demographics
from app.identity.scoring import Comparison, compare

Ref = tuple[str, str]  # (source id, local id)
IdentifierKey = tuple[str, str]  # (system, keyed hash of the normalised value)
MAX_POSSIBLE_MATCHES = 3  # listed for review per record


@dataclass(frozen=True, slots=True)
class Thresholds:
    link_at: float
    review_at: float


@dataclass(frozen=True, slots=True)
class Finding:
    """Why a record was kept apart from a person: for review."""

    kind: str  # conflict | possible_match
    reason: str
    patient_id: str
    score: float | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    patient_id: str | None  # None: a new person
    method: str  # identifier | score | new
    comparison: Comparison | None = None
    identifier_system: str | None = None
    findings: tuple[Finding, ...] = ()


@dataclass
class Pool:
    """The people a batch's records may be: candidates read from the index, and the batch's
    own records as they are decided (two new records of one search can be one person)."""

    records: dict[str, list[tuple[Ref, Demographics | None]]] = field(default_factory=dict)
    by_block: dict[str, set[str]] = field(default_factory=dict)
    by_identifier: dict[IdentifierKey, str] = field(default_factory=dict)

    def add(
        self,
        patient_id: str,
        ref: Ref,
        demographics: Demographics | None,
        blocks: Iterable[str] = (),
    ) -> None:
        self.records.setdefault(patient_id, []).append((ref, demographics))
        for block in blocks:
            self.by_block.setdefault(block, set()).add(patient_id)


def contradiction(
    demographics: Demographics, others: list[tuple[Ref, Demographics | None]]
) -> Comparison | None:
    """The first of `others` whose demographics contradict, as its comparison."""
    for _, other in others:
        if other is not None:
            comparison = compare(demographics, other)
            if comparison.contradiction is not None:
                return comparison
    return None


def decide(
    ref: Ref,
    demographics: Demographics,
    identifiers: list[IdentifierKey],
    search_blocks: set[str],
    pool: Pool,
    thresholds: Thresholds,
) -> Decision:
    people = {pool.by_identifier[k]: k[0] for k in identifiers if k in pool.by_identifier}
    if len(people) > 1:
        return Decision(
            None,
            "new",
            findings=tuple(Finding("conflict", "identifiers_of_several_people", p) for p in people),
        )
    if people:
        ((person, system),) = people.items()
        return _by_identifier(ref, demographics, person, system, pool)
    return _by_score(ref, demographics, search_blocks, pool, thresholds)


def _by_identifier(
    ref: Ref, demographics: Demographics, person: str, system: str, pool: Pool
) -> Decision:
    records = pool.records.get(person, [])
    contradicting = contradiction(demographics, records)
    if contradicting is not None:
        conflict = Finding(
            "conflict",
            "shared_identifier",
            person,
            contradicting.score,
            contradicting.contradiction,
        )
        return Decision(None, "new", contradicting, findings=(conflict,))
    if any(other[0] == ref[0] for other, _ in records):
        return Decision(None, "new", findings=(Finding("possible_match", "same_source", person),))
    return Decision(person, "identifier", identifier_system=system)


def _by_score(
    ref: Ref, demographics: Demographics, blocks: set[str], pool: Pool, thresholds: Thresholds
) -> Decision:
    candidates = set().union(*(pool.by_block.get(b, ()) for b in blocks))
    links: list[tuple[str, Comparison]] = []
    possible: list[tuple[str, Comparison, str]] = []
    for person in candidates:
        records = pool.records.get(person, [])
        comparisons = [compare(demographics, d) for _, d in records if d is not None]
        if not comparisons or any(c.contradiction for c in comparisons):
            continue  # a contradicted person is never a match, however alike otherwise
        best = max(comparisons, key=lambda c: c.score)
        same_source = any(other[0] == ref[0] for other, _ in records)
        if best.score >= thresholds.link_at and not same_source:
            links.append((person, best))
        elif best.score >= thresholds.review_at:
            possible.append((person, best, "same_source" if same_source else "score"))
    if len(links) == 1:
        ((person, best),) = links
        return Decision(person, "score", best)
    if links:
        findings = tuple(
            Finding("conflict", "matches_several_people", p, c.score) for p, c in links
        )
        return Decision(None, "new", findings=findings)
    possible.sort(key=lambda item: -item[1].score)
    findings = tuple(
        Finding("possible_match", reason, p, c.score)
        for p, c, reason in possible[:MAX_POSSIBLE_MATCHES]
    )
    return Decision(None, "new", findings=findings)
