"""The access policy: loading (and refusing) policy files, and the decision for a principal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.auth.policy import PolicyError, load_policy
from app.auth.principal import Principal

ROOT = Path(__file__).resolve().parents[2]


def principal(roles: set[str], scope: str, patient: str | None = None) -> Principal:
    return Principal("s", frozenset(roles), tuple(scope.split()), patient, None, "i")


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
