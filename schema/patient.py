"""Patient: one person across every linked upstream, with their clinical collections."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import strawberry

from app.domain import patients as domain
from app.domain import records as kinds
from resolvers import access, audit_log, identity_admin
from schema.allergies import Allergy
from schema.audit import AccessLogPage
from schema.care_teams import CareTeam
from schema.collections import Arguments, CollectionFields
from schema.common import Address, ContactPoint, HumanName, Identifier, SourceLink
from schema.conditions import Condition
from schema.context import Info, path_of
from schema.diagnostic_reports import DiagnosticReport
from schema.encounters import Encounter
from schema.identity import PatientLink
from schema.immunizations import Immunization
from schema.medications import Medication, MedicationDispense
from schema.observations import Observation
from schema.procedures import Procedure
from schema.scalars import Date

COLLECTIONS = CollectionFields()


MERGED_NOTE = (
    " Each fact once, with every reporting source; `merged: false` shows every source's record."
)


@strawberry.type(description="A patient: one person, linked across every upstream system.")
class Patient:
    id: strawberry.ID = strawberry.field(
        description="PatientGraph id: stable, opaque, one per person."
    )

    @strawberry.field(
        description="Identifiers from every linked record (MRNs, SSN, ...), without duplicates. "
        "A US SSN is shown as its last four digits (`***-**-1234`) unless the caller's role "
        "needs it in full."
    )
    def identifiers(self, root: strawberry.Parent[domain.Patient], info: Info) -> list[Identifier]:
        return access.visible_identifiers(info.context, root)  # type: ignore[return-value]

    name: HumanName | None = strawberry.field(
        description="Official name, from the highest-priority source that has one."
    )
    birth_date: Date | None = strawberry.field(description="Date of birth.")
    gender: str | None = strawberry.field(description="male, female, other or unknown.")
    sources: list[SourceLink] = strawberry.field(
        description="Every upstream patient record linked to this person."
    )

    @strawberry.field(
        description="How each linked record came to be part of this patient (identifier, score "
        "with each field's contribution, or an administrator), when and by which rule version. "
        "Admin role with the patientgraph/identity.read scope only."
    )
    async def links(
        self, root: strawberry.Parent[domain.Patient], info: Info
    ) -> list[PatientLink] | None:
        found = await identity_admin.link_explanations(info.context, root.id)
        return [PatientLink.of(link) for link in found]

    @strawberry.field(
        description="Who saw this patient's data, newest first: when, who (name and role), which "
        "app, which kinds of data and why (purposes of use; emergency access marked). Only for "
        "the patient themself (a patient-context token, e.g. `me { accessLog }`); auditors "
        "read `auditEvents`."
    )
    async def access_log(
        self,
        root: strawberry.Parent[domain.Patient],
        info: Info,
        first: Annotated[int, strawberry.argument(description="How many (1 to 200).")] = 20,
        after: Annotated[
            str | None, strawberry.argument(description="The previous page's endCursor.")
        ] = None,
    ) -> AccessLogPage | None:
        page = await audit_log.access_log(info.context, root.id, first, after, path_of(info))
        return AccessLogPage.of(page)

    @strawberry.field(
        description="Postal addresses, from the highest-priority source that has any. Minimum "
        "necessary: roles that need less see only city, state, country and the first three "
        "ZIP digits."
    )
    def address(self, root: strawberry.Parent[domain.Patient], info: Info) -> list[Address] | None:
        return access.visible_addresses(info.context, root)  # type: ignore[return-value]

    telecom: list[ContactPoint] | None = strawberry.field(
        description="Phone numbers and e-mail addresses, from the highest-priority source that "
        "has any (null with a FORBIDDEN error for roles the policy denies them)."
    )

    observations = COLLECTIONS.field(
        "observations",
        kinds.OBSERVATIONS,
        Observation,
        "Observations (vital signs, labs, ...), newest first. `category` and `code` are FHIR "
        "tokens (`laboratory`, `http://loinc.org|2339-0`); `since` keeps those effective at or "
        "after the given time.",
        arguments=Arguments.OBSERVATIONS,
    )
    lab_results = COLLECTIONS.field(
        "labResults",
        kinds.OBSERVATIONS,
        Observation,
        "Laboratory results from every source (EHRs and lab feeds): the same as "
        '`observations(category: "laboratory")`, newest first.',
        arguments=Arguments.LAB_RESULTS,
    )
    conditions = COLLECTIONS.field(
        "conditions",
        kinds.CONDITIONS,
        Condition,
        "Problems and diagnoses." + MERGED_NOTE,
        arguments=Arguments.MERGED,
    )
    allergies = COLLECTIONS.field(
        "allergies",
        kinds.ALLERGIES,
        Allergy,
        "Allergies and intolerances." + MERGED_NOTE,
        arguments=Arguments.MERGED,
    )
    medications = COLLECTIONS.field(
        "medications",
        kinds.MEDICATIONS,
        Medication,
        "Medications from every source: EHR orders and statements, with pharmacy fills "
        "attached (`fills`); drugs known only from fills appear as kind DISPENSE. Newest first. "
        "With `merged: false`, every source's entry separately.",
        arguments=Arguments.MERGED,
        companion_node=MedicationDispense,
    )
    immunizations = COLLECTIONS.field(
        "immunizations",
        kinds.IMMUNIZATIONS,
        Immunization,
        "Immunizations." + MERGED_NOTE,
        arguments=Arguments.MERGED,
    )
    encounters = COLLECTIONS.field(
        "encounters",
        kinds.ENCOUNTERS,
        Encounter,
        "Visits and admissions." + MERGED_NOTE,
        arguments=Arguments.MERGED,
    )
    procedures = COLLECTIONS.field(
        "procedures",
        kinds.PROCEDURES,
        Procedure,
        "Procedures performed." + MERGED_NOTE,
        arguments=Arguments.MERGED,
    )
    diagnostic_reports = COLLECTIONS.field(
        "diagnosticReports",
        kinds.DIAGNOSTIC_REPORTS,
        DiagnosticReport,
        "Diagnostic reports (lab panels, imaging)." + MERGED_NOTE,
        arguments=Arguments.MERGED,
    )
    care_teams = COLLECTIONS.field(
        "careTeams",
        kinds.CARE_TEAMS,
        CareTeam,
        "Care teams: the clinicians and others caring for the patient." + MERGED_NOTE,
        arguments=Arguments.MERGED,
    )


# GraphQL object type -> resource types its records come from: a field denial concerns the
# roles that read one of them (see `app.auth.policy`).
FIELD_OWNERS: Mapping[str, frozenset[str]] = {
    "Patient": frozenset({"Patient"}),
    **COLLECTIONS.owners(),
}
