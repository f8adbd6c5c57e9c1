"""The access policy: loading (and refusing) policy files, and the decision for a principal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.auth.policy import PolicyError, PurposeRefused, load_policy
from app.auth.principal import Principal
from schema.build import build_schema, load_checked_policy
from schema.patient import FIELD_OWNERS

ROOT = Path(__file__).resolve().parents[2]


def principal(
    roles: set[str],
    scope: str,
    patient: str | None = None,
    *,
    purposes: set[str] = frozenset(),  # type: ignore[assignment]
    practitioner: str | None = None,
) -> Principal:
    return Principal(
        "s",
        frozenset(roles),
        tuple(scope.split()),
        patient,
        None,
        "i",
        purposes=frozenset(purposes),
        practitioner=practitioner,
    )


def test_default_policy_decisions() -> None:
    policy = load_policy()
    clinician = policy.decide(principal({"clinician"}, "user/*.rs"))
    assert clinician.can_read("Observation")
    assert clinician.confined_to is None
    coordinator = policy.decide(principal({"care-coordinator"}, "user/*.rs"))
    assert coordinator.can_read("Encounter")
    assert not coordinator.can_read("Condition")
    # Roles and scopes must both agree.
    narrow = policy.decide(principal({"admin"}, "user/Patient.rs"))
    assert narrow.can_read("Patient")
    assert not narrow.can_read("Observation")
    # Several roles: the union of what they allow.
    both = policy.decide(principal({"billing", "care-coordinator"}, "user/*.rs"))
    assert both.can_read("Patient")
    assert both.can_read("MedicationDispense")


def test_patient_confinement() -> None:
    policy = load_policy()
    by_role = policy.decide(principal({"patient"}, "user/*.rs", "pg-1"))
    by_scope = policy.decide(principal({"clinician"}, "patient/*.read", "pg-1"))
    without_claim = policy.decide(principal({"patient"}, "patient/*.rs"))
    for access in (by_role, by_scope):
        assert access.can_see_patient("pg-1")
        assert not access.can_see_patient("pg-2")
    assert not without_claim.can_see_patient("pg-1")
    assert not without_claim.can_see_patient("")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not toml [", "unreadable"),
        ("[other]\nx = 1", "[roles.<name>]"),
        ("[roles.a]\nread = 'Patient'", "roles.a.read"),
        ("[roles.a]\nread = ['Patient']\nwrite = ['Patient']", "roles.a may only"),
        ("[roles.a]\nread = []\nown_record_only = 'yes'", "own_record_only"),
        ("[roles.a]\nread = []\nsensitive = 1", "roles.a.sensitive"),
        ("[roles.a]\nread = []\n[sensitive]\ncodes = ['no-bar']", "system|code"),
        ("[roles.a]\nread = []\n[sensitive]\nlabels = 'R'", "lists of strings"),
        ("[roles.a]\nread = []\n[sensitive]\nlevel = 3", "[sensitive] may only"),
        ("[roles.a]\nread = []\ncare_team_only = 'yes'", "care_team_only"),
        ("[roles.a]\nread = []\naddress = 'street'", "roles.a.address"),
        ("[roles.a]\nread = []\ndeny_fields = 'Patient.telecom'", "roles.a.deny_fields"),
        ("[roles.a]\nread = []\ndeny_fields = ['telecom']", "Type.field"),
        ("[roles.a]\nread = []\npurposes = ['treat']", "codes like TREAT"),
        ("[roles.a]\nread = []\n[purpose_of_use]\nrequired = 1", "[purpose_of_use]"),
    ],
)
def test_bad_policy_files_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert fragment in str(raised.value)


def test_check_config_names_a_bad_policy_file(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("[roles.a]\nread = 5\n")
    config = tmp_path / "config.toml"
    config.write_text(
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "k"\npolicy_file = "policy.toml"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "auth.policy_file" in result.stderr
    assert "Traceback" not in result.stderr


def test_purpose_of_use_selects_the_roles_that_apply() -> None:
    policy = load_policy()
    both = {"clinician", "billing"}
    treating = policy.decide(principal(both, "user/*.rs", purposes={"TREAT"}))
    paying = policy.decide(principal(both, "user/*.rs", purposes={"HPAYMT"}))
    unstated = policy.decide(principal(both, "user/*.rs"))
    assert treating.can_read("Observation")
    assert not treating.ssn_in_full
    # For payment only billing applies: no clinical data, the SSN in full.
    assert not paying.can_read("Observation")
    assert paying.ssn_in_full
    assert unstated.can_read("Observation")
    assert unstated.ssn_in_full
    with pytest.raises(PurposeRefused):
        policy.decide(principal({"billing"}, "user/*.rs", purposes={"TREAT"}))
    with pytest.raises(PurposeRefused):  # every stated purpose must be permitted
        policy.decide(principal({"clinician"}, "user/*.rs", purposes={"TREAT", "HPAYMT"}))
    with pytest.raises(PurposeRefused):
        policy.may_break_glass(principal({"clinician"}, "user/*.rs", purposes={"HOPERAT"}))


def test_a_purpose_can_be_required(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[roles.a]\nread = ["*"]\n[purpose_of_use]\nrequired = true\n')
    policy = load_policy(path)
    with pytest.raises(PurposeRefused):
        policy.decide(principal({"a"}, "user/*.rs"))
    assert policy.decide(principal({"a"}, "user/*.rs", purposes={"TREAT"})).can_read("Patient")
    # A caller with no known role is refused nothing: it simply reads nothing.
    assert not policy.decide(principal({"nobody"}, "user/*.rs")).can_read("Patient")


def test_field_denials_concern_only_roles_that_read_the_type() -> None:
    policy = load_policy(field_owners=FIELD_OWNERS)
    coordinator = policy.decide(principal({"care-coordinator"}, "user/*.rs"))
    clinician = policy.decide(principal({"clinician"}, "user/*.rs"))
    # Billing reads no medications, so it cannot lift the coordinator's denial...
    with_billing = policy.decide(principal({"care-coordinator", "billing"}, "user/*.rs"))
    # ...while a clinician, who reads notes, can.
    with_clinician = policy.decide(principal({"care-coordinator", "clinician"}, "user/*.rs"))
    assert "Medication.notes" in coordinator.denied_fields
    assert clinician.denied_fields == frozenset()
    assert "Medication.notes" in with_billing.denied_fields
    assert with_clinician.denied_fields == frozenset()


def test_care_team_and_address_rules(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        '[roles.doc]\nread = ["*"]\ncare_team_only = true\n'
        '[roles.office]\nread = ["Patient"]\naddress = "full"\n'
        '[roles.lab]\nread = ["Observation"]\n'
    )
    policy = load_policy(path)
    npi = "http://hl7.org/fhir/sid/us-npi|9990001"
    doc = policy.decide(principal({"doc"}, "user/*.rs", practitioner=npi))
    anonymous_doc = policy.decide(principal({"doc"}, "user/*.rs"))
    # Another role that reads patients without the restriction lifts it; one that does not
    # read patients does not.
    doc_and_office = policy.decide(principal({"doc", "office"}, "user/*.rs", practitioner=npi))
    doc_and_lab = policy.decide(principal({"doc", "lab"}, "user/*.rs", practitioner=npi))
    assert doc.care_team == npi
    assert anonymous_doc.care_team == ""
    assert doc_and_office.care_team is None
    assert doc_and_office.address_in_full
    assert doc_and_lab.care_team == npi
    assert not doc_and_lab.address_in_full


@pytest.mark.parametrize(
    ("field", "fragment"),
    [
        ("Patient.nickname", "Patient has no field nickname"),
        ("Coding.code", "not a field of Patient or a record type"),
        ("Patient.id", "non-null"),
    ],
)
def test_deny_fields_are_checked_against_the_schema(
    tmp_path: Path, field: str, fragment: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f'[roles.a]\nread = ["*"]\ndeny_fields = ["{field}"]\n')
    with pytest.raises(PolicyError) as raised:
        load_checked_policy(path)
    assert fragment in str(raised.value)


def test_field_guards_belong_to_one_schema(tmp_path: Path) -> None:
    """Servers with different policies in one process do not share guarded resolvers."""
    path = tmp_path / "policy.toml"
    path.write_text('[roles.a]\nread = ["*"]\ndeny_fields = ["Patient.telecom"]\n')
    guarded = build_schema(policy=load_policy(path, FIELD_OWNERS))
    plain = build_schema(policy=load_policy(None, FIELD_OWNERS))

    def telecom(schema: Any) -> Any:
        return schema._schema.type_map["Patient"].fields["telecom"].resolve

    assert telecom(guarded).__qualname__ == "_guarded.<locals>.resolver"
    assert telecom(plain).__qualname__ != telecom(guarded).__qualname__
