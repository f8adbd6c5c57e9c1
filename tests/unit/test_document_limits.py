"""schema/limits.py: documents over a limit are refused before validation, cheaply, and every
limit counts through fragments; documents within them (the README's examples) pass."""

from __future__ import annotations

import dataclasses

import pytest
from graphql import get_introspection_query

from app.bootstrap import document_limits
from app.settings import GraphQLSettings
from app.web.examples import DASHBOARD_QUERY, PORTAL_QUERY
from schema.limits import DocumentLimits, QueryRejected, check_document

LIMITS = DocumentLimits(
    max_chars=100_000,
    max_tokens=2_000,
    max_comments=200,
    max_depth=12,
    max_aliases=30,
    max_root_fields=10,
    max_directives=50,
    max_fragments=50,
    max_field_repeats=10,
)


@pytest.mark.parametrize("query", [DASHBOARD_QUERY, PORTAL_QUERY])
def test_the_example_operations_are_within_the_limits(query: str) -> None:
    check_document(query, LIMITS)  # within: no QueryRejected


def test_the_standard_introspection_query_is_within_the_limits() -> None:
    """What GraphiQL sends on load: 15 deep, counted apart from data fields."""
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    check_document(query, LIMITS)  # within: no QueryRejected
    too_deep = "{ __schema { types { " + "ofType { " * 19 + "name" + " }" * 19 + " } } }"
    with pytest.raises(QueryRejected, match="introspection"):
        check_document(too_deep, LIMITS)
    data_under_introspection_name = "{ __typename patients " + nest(12) + " }"
    with pytest.raises(QueryRejected, match="deeper than 12"):
        check_document(data_under_introspection_name, LIMITS)


def test_a_syntax_error_is_left_to_the_executor() -> None:
    check_document("{ patient(id: ", LIMITS)  # no QueryRejected


def nest(levels: int) -> str:
    """A selection set `levels` deep: `{ a { a { id } } }` is 3."""
    return "{ " + "a { " * (levels - 1) + "id" + " }" * (levels - 1) + " }"


@pytest.mark.parametrize(
    ("query", "over"),
    [
        ("{ " + "__typename " * 2_100 + "}", "tokens"),
        ("{ " + "__typename " * 10_000 + "}", "characters"),
        ("{ __typename }" + "\n# c" * 201, "tokens"),  # comments are bounded too
        ("{ patients " + nest(12) + " }", "deeper"),
        ("{ p { " + " ".join(f"a{i}: __typename" for i in range(31)) + " } }", "aliases"),
        ("{ " + "__typename " * 11 + "}", "root fields"),
        ("{ __typename" + " @include(if: true)" * 51 + " }", "directives"),
        (
            "{ ...F0 } " + " ".join(f"fragment F{i} on Query {{ __typename }}" for i in range(51)),
            "fragments",
        ),
        (
            "{ p { "
            + " ".join(f'o: observations(code: "c{i}") {{ id }}' for i in range(11))
            + " } }",
            "response name more than 10 times",
        ),
    ],
)
def test_each_limit_rejects_a_document_over_it(query: str, over: str) -> None:
    with pytest.raises(QueryRejected, match=over):
        check_document(query, LIMITS)


def test_limits_count_what_fragments_expand_to() -> None:
    """Each fragment spreads the previous one twice: 2^6 aliases from 12 written ones."""
    fragments = ["fragment F0 on Query { a: __typename b: __typename }"] + [
        f"fragment F{i} on Query {{ ...F{i - 1} x{i}: __typename ...F{i - 1} }}"
        for i in range(1, 6)
    ]
    query = "{ p { ...F5 } } " + " ".join(fragments)
    with pytest.raises(QueryRejected, match="aliases"):
        check_document(query, LIMITS)
    check_document("{ ...D } fragment D on Query { p " + nest(11) + " }", LIMITS)  # at the limit
    deep = "{ ...D } fragment D on Query { patients " + nest(12) + " }"
    with pytest.raises(QueryRejected, match="deeper"):
        check_document(deep, LIMITS)


def test_field_repeats_count_through_inline_fragments_and_fragment_spreads() -> None:
    """Validation compares the fields of an inline fragment or a spread fragment with those
    of the selection set around it, so they count together; other selection sets apart.
    Distinct aliases of one field are distinct response names, compared with nothing."""
    copies = " ".join(f'o: observations(code: "c{i}") {{ id }}' for i in range(6))
    distinct = " ".join(f'o{i}: observations(code: "c{i}") {{ id }}' for i in range(12))
    check_document(f"{{ p {{ {distinct} }} }}", LIMITS)  # within
    inline = f"{{ p {{ {copies} ... on Patient {{ {copies} }} }} }}"
    with pytest.raises(QueryRejected, match="response name more than 10 times"):
        check_document(inline, LIMITS)
    spread = f"{{ p {{ {copies} ...F }} }} fragment F on Patient {{ {copies} }}"
    with pytest.raises(QueryRejected, match="response name more than 10 times"):
        check_document(spread, LIMITS)
    inside = f"{{ p {{ ...F }} }} fragment F on Patient {{ {copies} q {{ {copies} }} }}"
    check_document(inside, LIMITS)  # six in each selection set: within
    nested = f"{{ p {{ ...F }} }} fragment F on Patient {{ q {{ {copies} {copies} }} }}"
    with pytest.raises(QueryRejected, match="response name more than 10 times"):
        check_document(nested, LIMITS)


def test_a_fragment_cycle_is_left_to_validation() -> None:
    query = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"
    check_document(query, LIMITS)  # within: no QueryRejected


def test_the_server_takes_each_limit_from_its_setting() -> None:
    configured = GraphQLSettings(max_depth=3, max_aliases=1, max_tokens=150)
    limits = document_limits(configured)
    assert limits == DocumentLimits(
        max_chars=configured.max_chars,
        max_tokens=150,
        max_comments=configured.max_comments,
        max_depth=3,
        max_aliases=1,
        max_root_fields=configured.max_root_fields,
        max_directives=configured.max_directives,
        max_fragments=configured.max_fragments,
        max_field_repeats=configured.max_field_repeats,
    )
    with pytest.raises(QueryRejected, match="aliases"):
        check_document("{ p { a: x b: x } }", limits)


def test_a_verdict_is_remembered_per_text_and_limits() -> None:
    query = "{ p { " + " ".join(f"a{i}: __typename" for i in range(31)) + " } }"
    for _ in range(2):  # refused again from memory, with the same reason
        with pytest.raises(QueryRejected, match="aliases"):
            check_document(query, LIMITS)
    check_document(query, dataclasses.replace(LIMITS, max_aliases=40))  # its own verdict
