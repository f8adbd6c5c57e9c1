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
  insensitive); a panel without a value of its own (blood pressure) by its components, each
  the same code and value. The fact appears once: the record of the highest-priority source,
  with every reporting source in `sources`. An observation without code, time or value is
  never merged.

The other kinds (`merged: true`, the default): one fact when
  conditions      the same code and the same day of onset (else of recordedDate)
  allergies       the same substance code (one patient's); the reactions are the union
  immunizations   the same vaccine code and day of occurrence
  encounters      the same class, start and end (to the second; an open end matches only one)
  procedures      the same code and performed instant (to the second)
  diagnostic reports  the same code and effective (else issued) instant (to the second)
  care teams      the same name (case and spacing ignored) and start day
  "The same code": the LOINC code when there is one, else the first coding's system and code.
  A record missing what its rule compares is never merged.

For every kind: two records of one source are never one fact (that system keeps them apart
for a reason), and a merged record carries the security labels of every record it stands for,
so a label either source set still governs who sees it.

Medications (`merged: true`, the default)
  Drug identity: any shared RxNorm or NDC code, else the same normalized name (lower case,
  punctuation and repeated spaces removed). An order (or statement) reported by several
  sources is one entry when drug, kind and date (day of `authoredOn`/`effective`) agree.
  Each pharmacy fill is attached (`fills`) to the latest entry of the same drug dated on or
  before the fill's written date (else the latest entry of that drug); fills of a drug with no
  order or statement become one entry of kind DISPENSE.

Notes
  When records from several sources become one entry, its `notes` are the union of their
  notes in source-priority order, each text once (compared ignoring spacing).

`merged: false` returns every source's records as they came (fills as their own DISPENSE
entries), for clinicians who need to see each system's version.

Order: newest first by each kind's date; records without a date last.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from app.domain.allergies import Allergy
from app.domain.care_teams import CareTeam
from app.domain.common import CodeableConcept, RecordMeta, SourceLink
from app.domain.conditions import Condition
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.encounters import Encounter
from app.domain.immunizations import Immunization
from app.domain.medications import Medication, MedicationDispense, MedicationKind
from app.domain.observations import Observation, ObservationComponent
from app.domain.patients import Patient, SourcePatient
from app.domain.procedures import Procedure
from app.domain.records import (
    ALLERGIES,
    CARE_TEAMS,
    CONDITIONS,
    DIAGNOSTIC_REPORTS,
    DISPENSES,
    ENCOUNTERS,
    IMMUNIZATIONS,
    MEDICATIONS,
    OBSERVATIONS,
    PROCEDURES,
    Combine,
    RecordKind,
    RecordQuery,
)

R = TypeVar("R")


class _Fact(Protocol):
    """A record of a kind whose records merge into one."""

    @property
    def sources(self) -> tuple[SourceLink, ...]: ...
    @property
    def meta(self) -> RecordMeta: ...


F = TypeVar("F", bound=_Fact)
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
        records = dedupe(records, FACT_KEYS[kind.name])
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


def condition_key(record: Condition) -> tuple[Any, ...] | None:
    return _keyed(_code_key(record.code), _day(record.onset or record.recorded_date))


def allergy_key(record: Allergy) -> tuple[Any, ...] | None:
    return _keyed(_code_key(record.code))


def immunization_key(record: Immunization) -> tuple[Any, ...] | None:
    return _keyed(_code_key(record.vaccine), _day(record.occurrence))


def encounter_key(record: Encounter) -> tuple[Any, ...] | None:
    return _keyed(record.class_code, _second(record.start), _second(record.end) or "open")


def procedure_key(record: Procedure) -> tuple[Any, ...] | None:
    return _keyed(_code_key(record.code), _second(record.performed))


def report_key(record: DiagnosticReport) -> tuple[Any, ...] | None:
    return _keyed(_code_key(record.code), _second(record.effective or record.issued))


def care_team_key(record: CareTeam) -> tuple[Any, ...] | None:
    name = " ".join((record.name or "").lower().split())
    return _keyed(name or None, _day(record.start))


def _keyed(*parts: Any) -> tuple[Any, ...] | None:
    """The parts as a key; None (never merged) when any is missing."""
    return None if any(part is None or part == "" for part in parts) else parts


def _day(value: str | None) -> str | None:
    return value[:10] if value and len(value) >= 10 else None


def _second(value: str | None) -> int | None:
    when = parse_instant(value) if value and len(value) > 10 else None
    return None if when is None else (when - EPOCH) // SECOND


# The same-fact rule of each kind that has one (`Combine.SAME_FACT`): its key function.
FACT_KEYS: Mapping[str, Callable[[Any], tuple[Any, ...] | None]] = {
    OBSERVATIONS.name: observation_key,
    CONDITIONS.name: condition_key,
    ALLERGIES.name: allergy_key,
    IMMUNIZATIONS.name: immunization_key,
    ENCOUNTERS.name: encounter_key,
    PROCEDURES.name: procedure_key,
    DIAGNOSTIC_REPORTS.name: report_key,
    CARE_TEAMS.name: care_team_key,
}


def dedupe(records: Sequence[F], key_of: Callable[[F], tuple[Any, ...] | None]) -> list[F]:
    """`records` in source-priority order; the first of each fact keeps its place and absorbs
    the same fact from other sources. Two records of one source are never one fact: that
    source keeps them apart for a reason."""
    out: list[F] = []
    seen: dict[tuple[Any, ...], list[int]] = {}
    for record in records:
        key = key_of(record)
        if key is None:
            out.append(record)
            continue
        places = seen.setdefault(key, [])
        into = next((i for i in places if not _same_source(out[i], record)), None)
        if into is None:
            places.append(len(out))
            out.append(record)
        else:
            out[into] = _absorb(out[into], record)
    return out


def _same_source(entry: Any, record: Any) -> bool:
    """Whether `record` comes from a source `entry` already holds a record of."""
    return record.sources[0].source_id in {link.source_id for link in entry.sources}


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
    if obs.components:  # a panel (blood pressure): the same when every component is
        parts = [_component_key(c) for c in obs.components]
        if all(part is not None for part in parts):
            return ("components", frozenset(parts))
    return None


def _component_key(component: ObservationComponent) -> tuple[Any, ...] | None:
    code = _code_key(component.code)
    q = component.value_quantity
    if code is None:
        return None
    if q is not None and q.value is not None and math.isfinite(q.value):
        return (code, float(f"{q.value:.6g}"), (q.unit or q.code or "").strip().lower())
    if component.value_string:
        return (code, " ".join(component.value_string.lower().split()))
    return None


def _union(a: tuple[SourceLink, ...], b: tuple[SourceLink, ...]) -> tuple[SourceLink, ...]:
    return a + tuple(link for link in b if link not in a)


def _absorb(first: F, other: F) -> F:
    """`first` (the higher-priority record) standing for both: `other`'s sources, notes and
    allergy reactions are added after its own, and its security labels too, so a label either
    source put on the fact still governs who sees it."""
    changes: dict[str, Any] = {"sources": _union(first.sources, other.sources)}
    if other.meta.security:
        labels = first.meta.security + tuple(
            c for c in other.meta.security if c not in first.meta.security
        )
        changes["meta"] = dataclasses.replace(first.meta, security=labels)
    if getattr(other, "notes", ()):
        changes["notes"] = union_notes(getattr(first, "notes", ()), other.notes)  # type: ignore[attr-defined]
    if isinstance(first, Allergy) and isinstance(other, Allergy):
        changes["reactions"] = first.reactions + tuple(
            r for r in other.reactions if r not in first.reactions
        )
    return dataclasses.replace(first, **changes)  # type: ignore[type-var]


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
            if (
                day
                and entry.kind == med.kind
                and _medication_date(entry) == day
                and not _same_source(entry, med)
            ):
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
