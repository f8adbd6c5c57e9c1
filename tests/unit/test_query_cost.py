"""schema/cost.py: the upstream work an operation can cause, estimated from the document, the
variables and the sources, and refused over the caller's budget with the figures."""

from __future__ import annotations

import time

import pytest

from app.bootstrap import cost_budget
from app.settings import GraphQLSettings
from app.web.examples import DASHBOARD_QUERY, PORTAL_QUERY
from resolvers.pagination import PageLimits
from schema.build import build_schema
from schema.cost import Budget, Cost, CostEstimator, Fanout, OverBudget
from schema.patient import COLLECTIONS

# Two patient sources; every collection served by one source, medications by two (a pharmacy
# for its fills).
FANOUT = Fanout(2, dict.fromkeys(COLLECTIONS.by_name, 1) | {"medications": 2}, PageLimits(20, 100))
BUDGET = Budget(max_searches=2_000, max_records=50_000, max_patients=100, patients_by_role={})
SCHEMA = build_schema()._schema


def estimator(budget: Budget = BUDGET) -> CostEstimator:
    return CostEstimator(SCHEMA, FANOUT, budget)


def test_the_examples_cost_what_their_pages_multiply_to() -> None:
    # 2 patient searches, then 5 collections of one source each for each of 20 patients.
    assert estimator().estimate(DASHBOARD_QUERY, None, None) == Cost(102, 20 + 20 * 25, 20)
    # The $first variable is used, and its default when absent.
    assert estimator().estimate(DASHBOARD_QUERY, None, {"first": 3}) == Cost(17, 78, 3)
    # me: 2 reads; observations 1, medications 2, allergies 1, immunizations 1 (pages 10,
    # 10, 20, 20).
    assert estimator().estimate(PORTAL_QUERY, "MyRecord", None) == Cost(7, 60, 1)


def test_aliases_and_fragments_count_once_per_use() -> None:
    aliased = "{ patients(first: 10) { nodes { a: conditions { id } b: conditions { id } } } }"
    assert estimator().estimate(aliased, None, None) == Cost(2 + 10 * 2, 10 + 10 * 40, 10)
    spread = (
        "{ patients(first: 10) { nodes { ...C ...C ... on Patient { ...C } } } }"
        " fragment C on Patient { conditions(first: 1) { nodes { id } } }"
    )
    assert estimator().estimate(spread, None, None) == Cost(2 + 10 * 3, 10 + 10 * 3, 10)
    # Under a plain field a collection costs per patient of the page around it.
    nested = "{ patients(first: 4) { nodes { name { text } } pageInfo { hasNextPage } } }"
    assert estimator().estimate(nested, None, None) == Cost(2, 4, 4)


def test_first_is_bounded_by_the_page_limits_and_variables_are_read() -> None:
    query = (
        "query($n: Int, $m: Int = 7) { patients(first: $n) {"
        " nodes { encounters(first: $m) { totalCount } } } }"
    )
    assert estimator().estimate(query, None, {"n": 500}) == Cost(102, 100 + 700, 100)
    assert estimator().estimate(query, None, {"n": -1}) == Cost(2, 0, 0)
    assert estimator().estimate(query, None, {"n": "x", "m": 1}) == Cost(22, 40, 20)


def test_remembered_estimates_follow_the_variables_they_read() -> None:
    remembering = estimator()  # one estimator: the second round is answered from its memo
    query = (
        "query($n: Int, $m: Int = 7) { patients(first: $n) {"
        " nodes { encounters(first: $m) { totalCount } } } }"
    )
    for _ in range(2):
        assert remembering.estimate(query, None, {"n": 500}) == Cost(102, 100 + 700, 100)
        assert remembering.estimate(query, None, {"n": 1}) == Cost(3, 8, 1)
        assert remembering.estimate(query, None, {"n": True}) == Cost(22, 160, 20)  # not 1
        assert remembering.estimate(query, None, {"n": 1, "unread": [1]}) == Cost(3, 8, 1)
        assert remembering.estimate(query, None, {"n": [1]}) == Cost(22, 160, 20)
    # kept: n=500, n=1 (an unread variable shares its entry), n=True; a list is not kept
    assert remembering._costs.cache_info().currsize == 3
    assert remembering._costs.cache_info().hits == 1 + 4
    by_id = "query($a: ID!, $b: ID!) { a: patient(id: $a) { id } b: patient(id: $b) { id } }"
    long_a, long_b = "a" * 10_000, "a" * 9_999 + "b"  # too long to keep: evaluated each time
    for _ in range(2):
        assert remembering.estimate(by_id, None, {"a": long_a, "b": long_a}).patients == 1
        assert remembering.estimate(by_id, None, {"a": long_a, "b": long_b}).patients == 2
        assert remembering.estimate(by_id, None, {"a": "p1", "b": "p2"}).patients == 2
        assert remembering.estimate(by_id, None, {"a": "p1", "b": "p1"}).patients == 1
    assert remembering._costs.cache_info().currsize == 3 + 2  # the long ids were not kept
    assert remembering._costs.cache_info().hits == 5 + 2


def test_patients_are_counted_by_distinct_id() -> None:
    reads = (
        'query($p: ID!) { a: patient(id: "x") { id } b: patient(id: "x") { id }'
        " c: patient(id: $p) { id } me { id } }"
    )
    assert estimator().estimate(reads, None, {"p": "y"}).patients == 3  # x, y, me
    assert estimator().estimate(reads, None, {"p": "x"}).patients == 2


def test_a_fragment_spread_twice_at_every_level_is_estimated_at_once() -> None:
    """2^40 collection searches per patient: the estimate is a product, not a walk."""
    fragments = ["fragment F0 on Patient { conditions { id } }"] + [
        f"fragment F{i} on Patient {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 41)
    ]
    query = "{ me { ...F40 } } " + " ".join(fragments)
    started = time.perf_counter()
    cost = estimator().estimate(query, None, None)
    assert time.perf_counter() - started < 1  # a sanity bound, not a timing claim
    assert cost.searches == 2 + 2**40


def test_documents_that_name_no_single_operation_cost_nothing_here() -> None:
    """Execution refuses them, before any resolver runs."""
    two = "query A { me { id } } query B { patients { totalCount } }"
    assert estimator().estimate(two, None, None) == Cost()
    assert estimator().estimate(two, "B", None) == Cost(2, 20, 20)
    assert estimator().estimate(two, "C", None) == Cost()
    assert estimator().estimate("{ patients(", None, None) == Cost()
    mutation = 'mutation { purgePatientCache(patientId: "x") { responses } }'
    assert estimator().estimate(mutation, None, None) == Cost()


@pytest.mark.parametrize(
    ("query", "variables", "over"),
    [
        ("{ patients(first: 100) { nodes { id } } me { id } }", None, "101 patients"),
        (
            "query($n: Int) { patients(first: $n) { nodes { "
            + " ".join(f"c{i}: conditions(first: 100) {{ id }}" for i in range(20))
            + " } } }",
            {"n": 100},
            "2002 upstream searches",
        ),
    ],
)
def test_an_estimate_over_the_budget_is_refused_with_its_figures(
    query: str, variables: dict[str, int] | None, over: str
) -> None:
    with pytest.raises(OverBudget, match=over) as refused:
        estimator().check(query, None, variables, frozenset({"clinician"}))
    assert refused.value.code == "QUERY_REJECTED"
    assert refused.value.extensions["budget"] == {
        "searches": 2_000,
        "records": 50_000,
        "patients": 100,
    }
    cost = estimator().estimate(query, None, variables)
    assert refused.value.extensions["cost"] == cost.as_extension()


def test_records_have_their_own_budget() -> None:
    tight = Budget(max_searches=2_000, max_records=500, max_patients=100, patients_by_role={})
    with pytest.raises(OverBudget, match="520 records"):
        estimator(tight).check(DASHBOARD_QUERY, None, None, frozenset())
    assert estimator(tight).check(DASHBOARD_QUERY, None, {"first": 19}, frozenset()).records == 494


def test_a_role_may_have_its_own_patient_budget() -> None:
    budget = Budget(2_000, 50_000, max_patients=1, patients_by_role={"clinician": 50, "admin": 20})
    check = estimator(budget).check
    assert check(DASHBOARD_QUERY, None, None, frozenset({"clinician", "admin"})).patients == 20
    with pytest.raises(OverBudget, match="20 patients"):
        check(DASHBOARD_QUERY, None, None, frozenset({"patient"}))
    assert check(PORTAL_QUERY, None, None, frozenset({"patient"})).patients == 1


def test_the_server_takes_its_budget_from_its_settings() -> None:
    configured = GraphQLSettings(
        max_searches=5, max_records=6, max_patients=7, patients_by_role={"a": 8}
    )
    assert cost_budget(configured) == Budget(5, 6, 7, {"a": 8})
    with pytest.raises(ValueError, match="greater than 0"):
        GraphQLSettings(patients_by_role={"a": 0})
