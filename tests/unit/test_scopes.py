"""SMART App Launch scope grammar (app.auth.scopes): strict parsing, fail closed, never raises."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.auth.scopes import (
    ALL_PERMISSIONS,
    MAX_CLAIM_CHARS,
    MAX_SCOPES,
    TOO_MANY,
    Context,
    Scope,
    ScopeSet,
    parse_scopes,
)

P, U, S = Context.PATIENT, Context.USER, Context.SYSTEM
READ = frozenset("rs")
WRITE = frozenset("cud")
ALL = frozenset("cruds")
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{OBS_CATEGORY}|laboratory"


def only_scope(text: str) -> Scope:
    parsed = parse_scopes(text)
    assert parsed.rejected == ()
    assert len(parsed.scopes) == 1
    return parsed.scopes[0]


# --- valid scopes -------------------------------------------------------------------------------

VALID = [
    # scope, context, resource type, permissions, constraints
    ("patient/Observation.read", P, "Observation", READ, ()),
    ("patient/Observation.rs", P, "Observation", READ, ()),
    ("patient/Observation.write", P, "Observation", WRITE, ()),
    ("patient/Observation.cud", P, "Observation", WRITE, ()),
    ("patient/Observation.*", P, "Observation", ALL, ()),
    ("patient/Observation.cruds", P, "Observation", ALL, ()),
    ("patient/Observation.r", P, "Observation", frozenset("r"), ()),
    ("patient/Observation.s", P, "Observation", frozenset("s"), ()),
    ("patient/Observation.c", P, "Observation", frozenset("c"), ()),
    ("system/Observation.crds", S, "Observation", frozenset("crds"), ()),
    ("user/Observation.ud", U, "Observation", frozenset("ud"), ()),
    ("patient/*.read", P, "*", READ, ()),
    ("user/*.read", U, "*", READ, ()),
    ("user/*.cruds", U, "*", ALL, ()),
    ("system/*.*", S, "*", ALL, ()),
    ("system/Patient.write", S, "Patient", WRITE, ()),
    ("patient/AllergyIntolerance.rs", P, "AllergyIntolerance", READ, ()),
    ("user/Ab.r", U, "Ab", frozenset("r"), ()),  # shortest type name shape
    (f"user/{'A' * 64}.r", U, "A" * 64, frozenset("r"), ()),  # longest
    # v2 granular scopes (SMART 2.2 "Finer-grained resource constraints using search parameters")
    (f"patient/Observation.rs?category={LAB}", P, "Observation", READ, (("category", LAB),)),
    (
        "patient/Observation.rs?category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem"
        "%2Fobservation-category%7Cvital-signs",
        P,
        "Observation",
        READ,
        (("category", f"{OBS_CATEGORY}|vital-signs"),),
    ),
    (
        "patient/Observation.rs?category=laboratory",
        P,
        "Observation",
        READ,
        (("category", "laboratory"),),
    ),
    (
        "patient/Observation.rs?code=http://loinc.org|4548-4",
        P,
        "Observation",
        READ,
        (("code", "http://loinc.org|4548-4"),),
    ),
    (
        "user/Observation.s?category=laboratory&code=http://loinc.org|2345-7",
        U,
        "Observation",
        frozenset("s"),
        (("category", "laboratory"), ("code", "http://loinc.org|2345-7")),
    ),
    (
        "user/Observation.s?code=http://loinc.org|2345-7&category=laboratory",
        U,
        "Observation",
        frozenset("s"),
        (("code", "http://loinc.org|2345-7"), ("category", "laboratory")),  # query order kept
    ),
    (
        "patient/MedicationRequest.rs?code=urn:oid:2.16.840.1.113883.6.88|12345",
        P,
        "MedicationRequest",
        READ,
        (("code", "urn:oid:2.16.840.1.113883.6.88|12345"),),
    ),
    ("patient/*.rs?category=laboratory", P, "*", READ, (("category", "laboratory"),)),
    (
        "patient/Condition.cruds?category=problem-list-item",
        P,
        "Condition",
        ALL,
        (("category", "problem-list-item"),),
    ),
    (
        "patient/Observation.rs?code=x%26y%3Dz",
        P,
        "Observation",
        READ,
        (("code", "x&y=z"),),
    ),  # decoded once
    (
        "patient/Observation.rs?code=a%20b",
        P,
        "Observation",
        READ,
        (("code", "a b"),),
    ),  # FHIR code: single inner spaces
    (
        "patient/Observation.rs?code=%2541",
        P,
        "Observation",
        READ,
        (("code", "%41"),),
    ),  # not decoded twice
    ("patient/Observation.rs?code=%C3%A9", P, "Observation", READ, (("code", "é"),)),  # UTF-8
    ("patient/Observation.rs?%63ode=x", P, "Observation", READ, (("code", "x"),)),
]


@pytest.mark.parametrize(
    ("text", "context", "resource_type", "permissions", "constraints"),
    VALID,
    ids=[row[0][:80] for row in VALID],
)
def test_valid_scope(
    text: str,
    context: Context,
    resource_type: str,
    permissions: frozenset[str],
    constraints: tuple[tuple[str, str], ...],
) -> None:
    assert only_scope(text) == Scope(
        context=context,
        resource_type=resource_type,
        permissions=permissions,
        constraints=constraints,
        raw=text,
    )


@pytest.mark.parametrize(
    ("v1", "v2"),
    [
        ("patient/Observation.read", "patient/Observation.rs"),
        ("user/*.write", "user/*.cud"),
        ("system/Patient.*", "system/Patient.cruds"),
    ],
)
def test_v1_and_v2_permissions_are_equivalent(v1: str, v2: str) -> None:
    """SMART 2.2 "Scope Equivalence"."""
    a, b = only_scope(v1), only_scope(v2)
    assert (a.context, a.resource_type, a.permissions) == (
        b.context,
        b.resource_type,
        b.permissions,
    )
    assert a.raw != b.raw


# --- invalid scopes -----------------------------------------------------------------------------

INVALID = [
    # permissions
    "patient/Observation.sr",  # wrong order
    "patient/Observation.rc",
    "patient/Observation.sdurc",
    "patient/Observation.rrs",  # repeats
    "patient/Observation.cc",
    "patient/Observation.x",  # unknown letters
    "patient/Observation.rsx",
    "patient/Observation.rw",
    "patient/Observation.Rs",  # case-sensitive
    "patient/Observation.READ",
    "patient/Observation.Read",
    "patient/Observation.readwrite",
    "patient/Observation.**",
    "patient/Observation.rs*",
    # granular query
    "patient/Observation.rs?status=final",  # unknown key
    "patient/Observation.rs?category=laboratory&status=final",
    "patient/Observation.rs?patient=123",
    "patient/Observation.rs?_id=1",
    "patient/Observation.rs?Category=laboratory",  # keys are case-sensitive
    "patient/Observation.rs?category:not=laboratory",  # search modifiers are not understood
    "patient/Observation.rs?code:text=glucose",
    "patient/Observation.rs?category=",  # empty value
    "patient/Observation.rs?category=a&category=b",  # repeated key
    "patient/Observation.rs?category=a&%63ategory=b",  # repeated once decoded
    "patient/Observation.rs?category",  # malformed pairs
    "patient/Observation.rs?=laboratory",
    "patient/Observation.rs?category==laboratory",
    "patient/Observation.rs?category=a=b",
    "patient/Observation.rs?category=laboratory&",
    "patient/Observation.rs?&category=laboratory",
    "patient/Observation.rs?category=a&&code=b",
    "patient/Observation.rs?",
    "patient/Observation.rs??category=laboratory",
    "patient/Observation.rs?category=a,b",  # FHIR OR: not evaluated, so not accepted
    "patient/Observation.rs?category=a%2Cb",
    "patient/Observation.rs?category=a%5Cb",  # FHIR escape character
    "patient/Observation.rs?code=a$b",
    f"patient/Observation.rs?category={OBS_CATEGORY}|",  # whole code system: refused
    "patient/Observation.rs?category=|laboratory",  # explicit no-system: refused
    "patient/Observation.rs?code=http://loinc.org|a|b",
    "patient/Observation.rs?code=loinc|4548-4",  # system must be an absolute URI
    "patient/Observation.rs?code=http://loinc.org%7C",
    "patient/Observation.rs?category=a+b",  # `+`: space or plus? refused
    "patient/Observation.rs?category=%zz",  # malformed percent-encoding
    "patient/Observation.rs?category=abc%",
    "patient/Observation.rs?category=%4",
    "patient/Observation.rs?category=%FF",  # not UTF-8
    "patient/Observation.rs?category=%00",  # control characters
    "patient/Observation.rs?category=a%0Ab",
    "patient/Observation.rs?category=a%09b",
    "patient/Observation.rs?category=%20laboratory",  # FHIR code: no leading/trailing spaces
    "patient/Observation.rs?category=laboratory%20",
    "patient/Observation.rs?category=a%20%20b",
    "patient/Observation.rs?category=a%C2%A0b",  # non-breaking space
    "patient/Observation.rs?code=http://loinc.org%20x|1",
    # v1 permissions with a query
    f"patient/Observation.read?category={LAB}",
    "patient/Observation.write?category=laboratory",
    "patient/Observation.*?category=laboratory",
    # context
    "Patient/Observation.read",
    "PATIENT/Observation.read",
    "User/*.read",
    "*/*.read",
    "*/Observation.read",
    "practitioner/Observation.read",
    "encounter/Observation.read",
    "/Observation.read",
    "Observation.read",
    "patient//Observation.read",
    # resource type
    "patient/observation.read",
    "patient/O.read",
    f"patient/{'A' * 65}.read",
    "patient/Observation1.read",
    "patient/Obs-ervation.read",
    "patient/Obs_ervation.read",
    "patient/Observation/1.read",
    "patient/.read",
    "patient/**.read",
    "patient/Observation*.read",
    # dots
    "patient/Observation",
    "patient/Observationread",
    "patient/Observation.",
    "patient/Observation.read.",
    "patient/Observation.rs.",
    "patient/Observation..read",
    "patient/Observation.read.rs",
    "patient/*",
    "patient/*.",
    "patient",
    "patient/",
    # unicode lookalikes and invisible characters
    "patient/\u041ebservation.read",  # Cyrillic capital O
    "patient/Observation.r\u0435ad",  # Cyrillic small ie
    "p\u0430tient/Observation.read",  # Cyrillic small a
    "patient/Observation\uff0eread",  # fullwidth full stop
    "patient\u2215Observation.read",  # division slash
    "patient/Observation\u200b.read",  # zero-width space
    "patient/Observation.read\u00a0",  # not ASCII whitespace: part of the token
    "patient/Observation.rs?category=laborator\u0443",
    "patient/\uff2fbservation.read",  # fullwidth O
    # RFC 6749 scope-token characters
    'patient/Observation.rs?category="laboratory"',
    "patient/Observation.rs?category=a\\b",
    # other garbage
    "admin",
    "openid.read",
    "OPENID",
    "launch/Patient",
    "patient/Observation.read\x00",
]


@pytest.mark.parametrize("text", INVALID, ids=[ascii(t)[1:80] for t in INVALID])
def test_invalid_scope_is_rejected_whole(text: str) -> None:
    assert parse_scopes(text) == ScopeSet(scopes=(), rejected=(text,), other=frozenset())


def test_invalid_table_rows_are_really_one_token_each() -> None:
    """Each row is one scope: no ASCII whitespace splits it (non-ASCII spaces are meant)."""
    assert all(_ascii_split(t) == [t] for t in INVALID)


# --- the claim ----------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["", " ", " \t\r\n\f\v "])
def test_empty_claim(claim: str) -> None:
    assert parse_scopes(claim) == ScopeSet(scopes=(), rejected=(), other=frozenset())


def test_claim_is_split_on_ascii_whitespace_only() -> None:
    parsed = parse_scopes(
        " patient/Observation.rs\tuser/*.read\r\nsystem/Patient.r\fopenid\vfhirUser "
    )
    assert [s.raw for s in parsed.scopes] == [
        "patient/Observation.rs",
        "user/*.read",
        "system/Patient.r",
    ]
    assert parsed.other == {"openid", "fhirUser"}
    # a non-breaking space or em space does not separate scopes: the whole token is rejected
    for space in ("\u00a0", "\u2003", "\u3000"):
        claim = f"patient/Observation.rs{space}user/*.read"
        assert parse_scopes(claim) == ScopeSet(scopes=(), rejected=(claim,), other=frozenset())


def test_well_known_non_resource_scopes_are_kept_apart() -> None:
    claim = "openid fhirUser profile launch launch/patient online_access offline_access"
    parsed = parse_scopes(f"{claim} patient/*.rs")
    assert parsed.other == frozenset(claim.split())
    assert [s.raw for s in parsed.scopes] == ["patient/*.rs"]
    assert parsed.rejected == ()


def test_one_bad_scope_does_not_spoil_the_others() -> None:
    parsed = parse_scopes(
        "openid patient/Observation.sr patient/Condition.rs patient/Observation.rs?status=final"
    )
    assert [s.raw for s in parsed.scopes] == ["patient/Condition.rs"]
    assert parsed.rejected == ("patient/Observation.sr", "patient/Observation.rs?status=final")
    assert parsed.other == {"openid"}
    assert parsed.grants("Observation") == []


def test_duplicates_are_kept_once_in_claim_order() -> None:
    parsed = parse_scopes(
        "user/*.read patient/Observation.rs user/*.read bogus bogus patient/Observation.rs"
    )
    assert [s.raw for s in parsed.scopes] == ["user/*.read", "patient/Observation.rs"]
    assert parsed.rejected == ("bogus",)


def test_equivalent_spellings_are_distinct_scopes() -> None:
    parsed = parse_scopes("patient/Observation.read patient/Observation.rs")
    assert len(parsed.scopes) == 2
    assert len(parsed.grants("Observation", "s")) == 2


def test_claim_at_the_length_limit_is_parsed() -> None:
    claim = "patient/Observation.rs".ljust(MAX_CLAIM_CHARS)
    assert len(claim) == MAX_CLAIM_CHARS
    assert len(parse_scopes(claim).scopes) == 1


def test_claim_over_the_length_limit_rejects_everything() -> None:
    claim = "openid patient/Observation.rs".ljust(MAX_CLAIM_CHARS + 1)
    assert parse_scopes(claim) == ScopeSet(scopes=(), rejected=(TOO_MANY,), other=frozenset())


def test_claim_at_the_scope_count_limit_is_parsed() -> None:
    claim = " ".join(f"patient/Observation.rs?code=c{i}" for i in range(MAX_SCOPES))
    assert len(parse_scopes(claim).scopes) == MAX_SCOPES


@pytest.mark.parametrize(
    "claim",
    [
        " ".join(f"patient/Observation.rs?code=c{i}" for i in range(MAX_SCOPES + 1)),
        " ".join(["user/*.read"] * (MAX_SCOPES + 1)),  # counted before de-duplication
        "x " * (MAX_SCOPES + 1),
    ],
    ids=["distinct", "duplicates", "garbage"],
)
def test_too_many_scopes_rejects_everything(claim: str) -> None:
    assert parse_scopes(claim) == ScopeSet(scopes=(), rejected=(TOO_MANY,), other=frozenset())


def test_non_string_claim_grants_nothing() -> None:
    parsed = parse_scopes(None)  # type: ignore[arg-type]
    assert parsed.scopes == ()
    assert parsed.other == frozenset()
    assert parsed.rejected


# --- grants() -----------------------------------------------------------------------------------


def test_grants_wildcard_type() -> None:
    parsed = parse_scopes("user/*.read")
    (wildcard,) = parsed.scopes
    assert parsed.grants("Observation") == [wildcard]
    assert parsed.grants("Patient", "s") == [wildcard]
    assert parsed.grants("*") == [wildcard]
    assert parsed.grants("Observation", "c") == []
    assert parsed.grants("observation") == []  # not a type name: nothing, even for "*"
    assert parsed.grants("") == []


def test_grants_specific_type_only() -> None:
    parsed = parse_scopes("patient/Observation.rs")
    assert parsed.grants("Observation")
    assert parsed.grants("Condition") == []
    assert parsed.grants("*") == []  # asking for every type needs a wildcard scope


def test_grants_context_filter() -> None:
    parsed = parse_scopes("patient/Observation.rs user/Condition.r system/*.s")
    patient_obs, user_cond, system_all = parsed.scopes
    assert parsed.grants("Observation") == [patient_obs]
    assert parsed.grants("Observation", contexts=(Context.USER,)) == []
    assert parsed.grants("Observation", contexts={Context.PATIENT}) == [patient_obs]
    assert parsed.grants("Condition", contexts=(Context.PATIENT, Context.USER)) == [user_cond]
    assert parsed.grants("Condition", "s") == [system_all]
    assert parsed.grants("Condition", "s", contexts=(Context.PATIENT, Context.USER)) == []
    assert parsed.grants("Observation", contexts=()) == []


def test_grants_write_is_not_read() -> None:
    parsed = parse_scopes("patient/Observation.write")
    for permission in "cud":
        assert parsed.grants("Observation", permission)
    for permission in "rs":
        assert parsed.grants("Observation", permission) == []


def test_grants_read_is_not_search() -> None:
    parsed = parse_scopes("patient/Observation.r")
    assert parsed.grants("Observation", "r")
    assert parsed.grants("Observation", "s") == []


def test_grants_every_matching_scope_in_claim_order() -> None:
    parsed = parse_scopes(
        "user/*.read patient/Observation.rs?category=laboratory patient/Condition.rs"
    )
    wildcard, constrained, _ = parsed.scopes
    assert parsed.grants("Observation") == [wildcard, constrained]
    assert constrained.constraints == (("category", "laboratory"),)  # left for the caller


@pytest.mark.parametrize("permission", ["", "x", "R", "rs", "read", "write", "*"])
def test_grants_only_single_permission_letters(permission: str) -> None:
    assert parse_scopes("user/*.cruds").grants("Observation", permission) == []


def test_allows_ignores_constraints() -> None:
    scope = only_scope("patient/Observation.rs?category=laboratory")
    assert scope.allows("Observation")
    assert scope.allows("Observation", "s")
    assert not scope.allows("Observation", "u")


# --- properties ---------------------------------------------------------------------------------

CONTEXTS = st.sampled_from(list(Context))
TYPES = st.one_of(st.just("*"), st.from_regex(r"[A-Z][A-Za-z]{1,63}", fullmatch=True))
V1 = {"read": READ, "write": WRITE, "*": ALL}
V2_PERMISSIONS = st.sets(st.sampled_from("cruds"), min_size=1).map(
    lambda letters: "".join(c for c in "cruds" if c in letters)
)
SYSTEMS = st.sampled_from(
    [OBS_CATEGORY, "http://loinc.org", "http://snomed.info/sct", "urn:oid:2.16.840.1.113883.6.88"]
)
CODE_WORD = st.text(
    alphabet=st.characters(exclude_characters=",$|\\ ", exclude_categories=("C", "Z")),
    min_size=1,
    max_size=12,
)
CODES = st.lists(CODE_WORD, min_size=1, max_size=3).map(" ".join)
TOKENS = st.one_of(CODES, st.builds(lambda s, c: f"{s}|{c}", SYSTEMS, CODES))
CONSTRAINTS = st.lists(
    st.tuples(st.sampled_from(["category", "code"]), TOKENS), max_size=2, unique_by=lambda kv: kv[0]
)


@st.composite
def valid_scopes(draw: st.DrawFn) -> tuple[str, Scope]:
    """A well-formed scope string and what it must parse to."""
    context, resource_type = draw(CONTEXTS), draw(TYPES)
    constraints: list[tuple[str, str]] = []
    if draw(st.booleans()):
        v1 = draw(st.sampled_from(sorted(V1)))
        permissions, text = V1[v1], f"{context}/{resource_type}.{v1}"
    else:
        v2 = draw(V2_PERMISSIONS)
        permissions, text = frozenset(v2), f"{context}/{resource_type}.{v2}"
        constraints = draw(CONSTRAINTS)
    if constraints:
        encode = draw(st.booleans())
        pairs = [
            f"{k}={quote(v, safe='') if encode else quote(v, safe=':/|')}" for k, v in constraints
        ]
        text += "?" + "&".join(pairs)
    return text, Scope(context, resource_type, permissions, tuple(constraints), text)


WHITESPACE = st.text(alphabet=" \t\r\n\f\v", min_size=1, max_size=3)
SCOPE_ALPHABET = "patientusersystm/*.ObservationPcrudsxRW?&=|%:7C2Fa0 \u00a0\u041e"
MUTATED = st.builds(
    lambda scope, i, junk: scope[0][:i] + junk + scope[0][i + 1 :],
    valid_scopes(),
    st.integers(0, 80),
    st.text(alphabet=SCOPE_ALPHABET, max_size=2),
)
ANY_CLAIM = st.one_of(
    st.text(),
    st.text(alphabet=SCOPE_ALPHABET),
    MUTATED,
    st.lists(st.one_of(valid_scopes().map(lambda s: s[0]), MUTATED), max_size=5).map(" ".join),
)


@given(ANY_CLAIM)
def test_never_raises_and_accounts_for_every_token(claim: str) -> None:
    parsed = parse_scopes(claim)
    assert isinstance(parsed, ScopeSet)
    if parsed.rejected == (TOO_MANY,):
        assert not parsed.scopes
        assert not parsed.other
        return
    tokens = list(dict.fromkeys(_ascii_split(claim)))
    assert sorted(
        [s.raw for s in parsed.scopes] + list(parsed.rejected) + list(parsed.other)
    ) == sorted(tokens)
    for scope in parsed.scopes:
        assert scope.permissions
        assert scope.permissions <= ALL_PERMISSIONS
        assert all(key in ("category", "code") and value for key, value in scope.constraints)


def _ascii_split(claim: str) -> list[str]:
    for space in "\t\r\n\f\v":
        claim = claim.replace(space, " ")
    return [token for token in claim.split(" ") if token]


@given(valid_scopes())
def test_valid_generated_scope_parses_and_round_trips(generated: tuple[str, Scope]) -> None:
    text, expected = generated
    assert only_scope(text) == expected


@given(st.lists(valid_scopes(), min_size=1, max_size=8), st.data())
def test_valid_generated_claim_parses_in_order(
    generated: list[tuple[str, Scope]], data: st.DataObject
) -> None:
    claim = data.draw(WHITESPACE, label="lead")
    for text, _ in generated:
        claim += text + data.draw(WHITESPACE, label="sep")
    parsed = parse_scopes(claim)
    assert parsed.rejected == ()
    assert parsed.scopes == tuple(dict(generated).values())


@given(
    ANY_CLAIM,
    st.one_of(st.just("*"), st.sampled_from(["Observation", "Patient", "observation", "x"])),
    st.sampled_from([*"cruds", "", "rs", "x"]),
)
def test_granted_needs_a_scope_with_that_permission(
    claim: str, resource_type: str, permission: str
) -> None:
    parsed = parse_scopes(claim)
    granting = parsed.grants(resource_type, permission)
    for scope in granting:
        assert scope in parsed.scopes
        assert permission in scope.permissions
        assert scope.resource_type in ("*", resource_type)
    if permission not in ALL_PERMISSIONS or resource_type[0].islower():
        assert granting == []
