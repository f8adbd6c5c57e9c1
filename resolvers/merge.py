"""How records from several sources become one view: every merge and de-duplication rule
lives here, so clinicians and reviewers can read them in one place.

Patients
  One `Patient` per PatientGraph id. Demographics come from the first source (configured
  priority order) that has them; addresses and telecom likewise come all from one source, the
  first that has any (never mixed); identifiers are the union of all linked records.

Observations (`merged: true`, the default)
  Two observations are the same fact when they share a code (the LOINC code when either has
  one, else the first coding's system and code), the same effective instant (compared in UTC,
  to the second) and the same value: the same number (to 6 significant digits) in the same
  unit (case-insensitive), the same set of codes, or the same text (case- and space-
  insensitive). The fact appears once: the record of the highest-priority source, with every
  reporting source in `sources`. An observation without code, time or value is never merged.

Medications (`merged: true`, the default)
  Drug identity: any shared RxNorm or NDC code, else the same normalized name (lower case,
  punctuation and repeated spaces removed). An order (or statement) reported by several
  sources is one entry when drug, kind and date (day of `authoredOn`/`effective`) agree.
  Each pharmacy fill is attached (`fills`) to the latest entry of the same drug dated on or
  before the fill's written date (else the latest entry of that drug); fills of a drug with no
  order or statement become one entry of kind DISPENSE.

Notes
  When observations or medications from several sources become one entry, its `notes` are
  the union of their notes in source-priority order, each text once (compared ignoring
  spacing). Conditions and the other kinds are not merged, so each record keeps its own notes.

`merged: false` returns every source's records as they came (fills as their own DISPENSE
entries), for clinicians who need to see each system's version.

Order: newest first by each kind's date; records without a date last.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from app.domain.common import CodeableConcept, SourceLink
from app.domain.medications import Medication, MedicationDispense, MedicationKind
from app.domain.observations import Observation
from app.domain.patients import Patient, SourcePatient
from app.domain.records import DISPENSES, MEDICATIONS, Combine, RecordKind, RecordQuery

R = TypeVar("R")
Merged = TypeVar("Merged", Observation, Medication)  # the kinds whose records merge into one
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def merge_patient(
    patient_id: str,
    links: Sequence[SourceLink],
    records: Mapping[SourceLink, SourcePatient],
    source_order: Sequence[str],
) -> Patient:
    rank = {source_id: i for i, source_id in enumerate(source_order)}
    ordered = sorted(links, key=lambda link: (rank.get(link.source_id, len(rank)), link.local_id))
    return Patient(
        id=patient_id,
        sources=tuple(ordered),
        records=tuple(records[link] for link in ordered if link in records),
    )


# ---- time ------------------------------------------------------------------------------------


def parse_instant(value: str | None) -> datetime | None:
    """ISO 8601 date or dateTime as an aware datetime (dates and naive times taken as UTC)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value if len(value) > 7 else f"{value}-01-01"[:10])
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def newest_first(kind: RecordKind[Any], records: Iterable[R]) -> list[R]:
    """Newest first by the kind's date, records without one last; ties keep their order (a
    reverse sort is stable, and an undated record's key "" sorts below every date)."""
    date_of = kind.date
    return sorted(records, key=lambda r: date_of(r) or "", reverse=True)


def combine(
    kind: RecordKind[Any],
    per_source: Sequence[Sequence[Any]],
    companions: Sequence[Sequence[Any]],
    allowed: frozenset[str],
    filters: RecordQuery,
    *,
    merged: bool,
) -> list[Any]:
    """One view of `kind` from every linked source's records (priority order) and, for a kind
    with a companion (medications), the records found by who the person is (pharmacy fills):
    records of types outside `allowed` and those not matching `filters` are left out, then the
    kind's combine rule applies (`merged: false`: every source's record as it came)."""
    records = [r for group in per_source for r in group]
    if len(allowed) < len(kind.resource_types):
        records = [r for r in records if r.sources[0].resource_type in allowed]
    if filters.category or filters.code or filters.since:
        # Also filter here: a lenient upstream may ignore a search parameter it does not know.
        records = [r for r in records if matches(kind, r, filters)]
    if kind.combine is Combine.SAME_DRUG:
        fills = [f for group in companions for f in group]
        return (merge_medications if merged else unmerged_medications)(records, fills)
    if kind.combine is Combine.SAME_FACT and merged:
        records = dedupe_observations(records)
    return newest_first(kind, records)


def matches(kind: RecordKind[R], record: R, filters: RecordQuery) -> bool:
    """The record meets the query's filters: `category` and `code` as FHIR tokens, `since`
    against the kind's searched date (a record without the element does not match)."""
    if filters.category and filters.category.rpartition("|")[2] not in kind.categories(record):
        return False
    if filters.code:
        code = kind.code(record)
        if code is None or not code.has_code(filters.code):
            return False
    if filters.since:
        when = parse_instant(kind.since_date(record))
        since = parse_instant(filters.since)
        return when is not None and since is not None and when >= since
    return True


# ---- observations ----------------------------------------------------------------------------


def observation_key(obs: Observation) -> tuple[Any, ...] | None:
    code, when, value = _code_key(obs.code), parse_instant(obs.effective), _value_key(obs)
    if code is None or when is None or value is None:
        return None
    # The instant in whole seconds since the epoch: UTC, to the second (floor division keeps
    # the microseconds' truncation towards the past, also before 1970).
    return (code, (when - EPOCH) // SECOND, value)


def dedupe_observations(records: Sequence[Observation]) -> list[Observation]:
    """`records` in source-priority order; the first of each fact keeps its place."""
    out: list[Observation] = []
    seen: dict[tuple[Any, ...], int] = {}
    for obs in records:
        key = observation_key(obs)
        if key is None:
            out.append(obs)
        elif key in seen:
            out[seen[key]] = _absorb(out[seen[key]], obs)
        else:
            seen[key] = len(out)
            out.append(obs)
    return out


def _code_key(concept: CodeableConcept) -> tuple[str, str] | None:
    for c in concept.coding:
        if c.system == LOINC and c.code:
            return (LOINC, c.code)
    for c in concept.coding:
        if c.system and c.code:
            return (c.system, c.code)
    return None


def _value_key(obs: Observation) -> tuple[Any, ...] | None:
    q = obs.value_quantity
    if q is not None and q.value is not None and math.isfinite(q.value):
        return (
            "quantity",
            float(f"{q.value:.6g}"),
            (q.unit or q.code or "").strip().lower(),
            q.comparator or "",
        )
    if obs.value_concept is not None and obs.value_concept.coding:
        return ("concept", frozenset((c.system, c.code) for c in obs.value_concept.coding))
    if obs.value_string:
        return ("text", " ".join(obs.value_string.lower().split()))
    return None


def _union(a: tuple[SourceLink, ...], b: tuple[SourceLink, ...]) -> tuple[SourceLink, ...]:
    return a + tuple(link for link in b if link not in a)


def _absorb(first: Merged, other: Merged) -> Merged:
    """`first` (the higher-priority record) standing for both: `other`'s sources and notes
    are added after its own."""
    notes = union_notes(first.notes, other.notes) if other.notes else first.notes
    return dataclasses.replace(first, sources=_union(first.sources, other.sources), notes=notes)


def union_notes(*notes: Sequence[str]) -> tuple[str, ...]:
    """Every note once, in the order given; two notes are the same text when they differ only
    in spacing (the first one's wording is kept)."""
    out: dict[str, str] = {}
    for note in (n for group in notes for n in group):
        out.setdefault(" ".join(note.split()), note)
    return tuple(out.values())


# ---- medications -----------------------------------------------------------------------------


def drug_keys(concept: CodeableConcept) -> frozenset[tuple[str, str]]:
    keys = {(c.system, c.code) for c in concept.coding if c.system in (RXNORM, NDC) and c.code}
    name = _normalized_name(concept.text)
    if name:
        keys.add(("name", name))
    return frozenset((s or "", c or "") for s, c in keys)


def merge_medications(
    medications: Sequence[Medication], dispenses: Sequence[MedicationDispense]
) -> list[Medication]:
    """`medications` in source-priority order; see the module docstring for the rules."""
    entries = _DrugIndex()
    for med in medications:
        entries.add_or_merge(med)
    fills: dict[int, list[MedicationDispense]] = {}
    orphans = _DrugIndex()
    for fill in dispenses:
        target = entries.entry_for_fill(fill)
        if target is None:
            orphans.group_fill(fill)
        else:
            fills.setdefault(target, []).append(fill)
    merged = [
        dataclasses.replace(entry, fills=tuple(newest_first(DISPENSES, fills[i])))
        if i in fills
        else entry
        for i, entry in enumerate(entries.items)
    ]
    return newest_first(MEDICATIONS, merged + [_dispense_entry(g) for g in orphans.groups])


def unmerged_medications(
    medications: Sequence[Medication], dispenses: Sequence[MedicationDispense]
) -> list[Medication]:
    singles = [_dispense_entry([fill]) for fill in dispenses]
    return newest_first(MEDICATIONS, [*medications, *singles])


def _medication_date(med: Medication) -> str:
    return (med.authored_on or med.effective or "")[:10]


class _DrugIndex:
    """Entries (or groups of fills) findable by any of their drug keys in O(1) per key, so
    merging stays linear in the number of records."""

    def __init__(self) -> None:
        self.items: list[Medication] = []
        self.groups: list[list[MedicationDispense]] = []
        self._by_key: dict[tuple[str, str], list[int]] = {}

    def _candidates(self, keys: frozenset[tuple[str, str]]) -> list[int]:
        return sorted({i for key in keys for i in self._by_key.get(key, ())})

    def _index(self, position: int, keys: frozenset[tuple[str, str]]) -> None:
        for key in keys:
            self._by_key.setdefault(key, []).append(position)

    def add_or_merge(self, med: Medication) -> None:
        keys, day = drug_keys(med.medication), _medication_date(med)
        for i in self._candidates(keys):
            entry = self.items[i]
            if day and entry.kind == med.kind and _medication_date(entry) == day:
                self.items[i] = _absorb(entry, med)
                return
        self._index(len(self.items), keys)
        self.items.append(med)

    def entry_for_fill(self, fill: MedicationDispense) -> int | None:
        same_drug = self._candidates(drug_keys(fill.medication))
        if not same_drug:
            return None
        written = (fill.written_date or fill.last_fill_date or "")[:10]
        dates = {i: _medication_date(self.items[i]) for i in same_drug}
        before = [i for i in same_drug if written and dates[i] <= written]
        return max(before or same_drug, key=lambda i: dates[i])

    def group_fill(self, fill: MedicationDispense) -> None:
        keys = drug_keys(fill.medication)
        existing = self._candidates(keys)
        if existing:
            self.groups[existing[0]].append(fill)
        else:
            self._index(len(self.groups), keys)
            self.groups.append([fill])


def _dispense_entry(fills: Sequence[MedicationDispense]) -> Medication:
    ordered = newest_first(DISPENSES, fills)
    latest = ordered[0]
    sources: tuple[SourceLink, ...] = ()
    for fill in ordered:
        sources = _union(sources, fill.sources)
    return Medication(
        sources=sources,
        meta=latest.meta,
        kind=MedicationKind.DISPENSE,
        medication=latest.medication,
        status=None,
        intent=None,
        authored_on=latest.written_date,
        effective=latest.last_fill_date,
        dosage=(latest.sig,) if latest.sig else (),
        requester=latest.prescriber,
        fills=tuple(ordered),
    )


_PUNCTUATION = re.compile(r"[^\w\s]")


def _normalized_name(text: str | None) -> str:
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split()) if text else ""
