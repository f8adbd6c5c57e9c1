"""What a GraphQL document may be, checked before it is validated or executed, and cheaply: a
hostile document under the body limit must not hold the event loop (parsing is linear in its
tokens, but some validation rules are quadratic in the fields of one selection, and every
alias of a collection is one more upstream search).

`check_document` refuses an over-long text outright, parses with a token limit (graphql-core
stops at the limit, so a token bomb costs what a document of that many tokens costs, about
25 µs a token: 2,000 tokens, the default, is some 50 ms) and then walks the parsed document once,
without recursion over selections, counting nesting depth, aliases, root fields, directives
and fragments, fragment spreads expanded (each fragment measured once), and how often one
response name (alias, or the field's name) repeats in one selection set: graphql-core's
OverlappingFieldsCanBeMerged compares every pair of fields with the same response name, so 200
copies of a collection under one alias with different arguments cost 130 ms to validate and
800 cost 1.7 s. Over any limit it
raises `QueryRejected` (`QUERY_REJECTED`, HTTP 400) and nothing runs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)

VERDICTS_REMEMBERED = 512
MAX_REMEMBERED = 20_000  # characters: longer documents are judged every time, not kept
ABORTED = "Parsing aborted"  # graphql-core's words when a parse limit is reached
# Introspection (`__schema`, `__type`) nests deeper than any data query: the standard
# introspection query (graphql-js `getIntrospectionQuery`, what GraphiQL sends) is 15 deep.
# Its fields are counted apart, against this bound.
MAX_INTROSPECTION_DEPTH = 20


class QueryRejected(Exception):
    """The document is over a limit (the message says which, never the document)."""

    code = "QUERY_REJECTED"


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """From `[graphql]` (`app.settings.GraphQLSettings`, where the defaults are)."""

    max_chars: int  # of the document's text, checked before parsing
    max_tokens: int  # lexical tokens
    max_comments: int
    max_depth: int  # nested selections
    max_aliases: int
    max_root_fields: int
    max_directives: int
    max_fragments: int
    max_field_repeats: int  # of one response name in one selection set (inline fragments shared)


@dataclass(frozen=True, slots=True)
class Measure:
    depth: int = 0  # of data fields
    introspection_depth: int = 0  # of fields under `__schema` / `__type`
    aliases: int = 0
    directives: int = 0
    repeats: int = 0  # the most often one response name is selected in one selection set
    # How often each response name is selected at the top of this selection set, for the
    # selection set a fragment is spread into (whose fields validation compares with these).
    top: Counter[str] = field(default_factory=Counter)


def check_document(query: str, limits: DocumentLimits) -> None:
    """Raises QueryRejected when the document is over `limits`. A document that does not parse
    passes (the executor reports the syntax error as before). The verdict is remembered per
    text: clients send the same few documents again and again, and parsing one costs about
    25 µs a token, more than answering it from the response cache."""
    if len(query) > limits.max_chars:  # before the parser, whose own check costs a scan
        raise QueryRejected(f"The document is longer than {limits.max_chars} characters")
    refusal = _verdict(query, limits) if len(query) <= MAX_REMEMBERED else _judge(query, limits)
    if refusal is not None:
        raise QueryRejected(refusal)


@functools.lru_cache(maxsize=VERDICTS_REMEMBERED)
def _verdict(query: str, limits: DocumentLimits) -> str | None:
    return _judge(query, limits)


def _judge(query: str, limits: DocumentLimits) -> str | None:
    """Why the document is over `limits`, or None."""
    try:
        _parse_and_check(query, limits)
    except QueryRejected as rejected:
        return str(rejected)
    return None


def _parse_and_check(query: str, limits: DocumentLimits) -> None:
    try:
        document = parse(
            query,
            no_location=True,
            max_lexical_tokens=limits.max_tokens,
            max_comments=limits.max_comments,
        )
    except GraphQLError as error:
        if ABORTED in error.message:
            raise QueryRejected(
                f"The document is over the parser's limits ({limits.max_tokens} tokens, "
                f"{limits.max_comments} comments)"
            ) from None
        return
    _check(document, limits)


def _check(document: DocumentNode, limits: DocumentLimits) -> None:
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    if len(fragments) > limits.max_fragments:
        raise QueryRejected(f"The document defines more than {limits.max_fragments} fragments")
    memo: dict[str, Measure] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            roots = len(definition.selection_set.selections)
            if roots > limits.max_root_fields:
                raise QueryRejected(
                    f"An operation selects more than {limits.max_root_fields} root fields"
                )
            found = _measure(definition.selection_set, fragments, memo, frozenset())
            _within(found, len(definition.directives or ()), limits)
    for fragment in fragments.values():  # also those no operation spreads
        _within(_fragment(fragment.name.value, fragments, memo, frozenset()), 0, limits)


def _within(found: Measure, own_directives: int, limits: DocumentLimits) -> None:
    if found.depth > limits.max_depth:
        raise QueryRejected(f"The document nests selections deeper than {limits.max_depth}")
    if found.introspection_depth > MAX_INTROSPECTION_DEPTH:
        raise QueryRejected(
            f"The document nests introspection deeper than {MAX_INTROSPECTION_DEPTH}"
        )
    if found.aliases > limits.max_aliases:
        raise QueryRejected(f"The document uses more than {limits.max_aliases} aliases")
    if found.directives + own_directives > limits.max_directives:
        raise QueryRejected(f"The document uses more than {limits.max_directives} directives")
    if found.repeats > limits.max_field_repeats:
        raise QueryRejected(
            f"A selection set selects one response name more than {limits.max_field_repeats} times"
        )


def _measure(
    root: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    memo: dict[str, Measure],
    visiting: frozenset[str],
    introspecting: bool = False,
) -> Measure:
    """Depth, aliases, directives and response-name repeats of one selection set, fragments
    expanded: an explicit stack for nested selections; recursion only from a fragment spread to its
    fragment (at most `max_fragments` deep, each fragment measured once). The fields of an
    inline fragment belong to the selection set around it, as validation sees them."""
    depth = introspection = aliases = directives = repeats = 0
    top: Counter[str] = Counter()
    # (selection set, its level, whether it is under an introspection field)
    pending: list[tuple[SelectionSetNode, int, bool]] = [(root, 1, introspecting)]
    while pending:
        outer, level, inside = pending.pop()
        names: Counter[str] = Counter()
        sets = [outer]  # the selection set and the inline fragments directly in it
        while sets:
            for selection in sets.pop().selections:
                directives += len(selection.directives or ())
                if isinstance(selection, FieldNode):
                    names[(selection.alias or selection.name).value] += 1
                    meta = inside or selection.name.value.startswith("__")
                    if meta:
                        introspection = max(introspection, level)
                    else:
                        depth = max(depth, level)
                    aliases += selection.alias is not None
                    if selection.selection_set is not None:
                        pending.append((selection.selection_set, level + 1, meta))
                elif isinstance(selection, InlineFragmentNode):
                    sets.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    inner = _fragment(selection.name.value, fragments, memo, visiting)
                    below = level - 1
                    if inside:  # a fragment spread under introspection is introspection
                        deepest = max(inner.depth, inner.introspection_depth)
                        introspection = max(introspection, below + deepest)
                    else:
                        depth = max(depth, below + inner.depth)
                        introspection = max(introspection, below + inner.introspection_depth)
                    aliases += inner.aliases
                    directives += inner.directives
                    repeats = max(repeats, inner.repeats)
                    names.update(inner.top)
        if names:
            repeats = max(repeats, max(names.values()))
        if outer is root:
            top = names
    return Measure(depth, introspection, aliases, directives, repeats, top)


def _fragment(
    name: str,
    fragments: dict[str, FragmentDefinitionNode],
    memo: dict[str, Measure],
    visiting: frozenset[str],
) -> Measure:
    known = memo.get(name)
    if known is not None:
        return known
    fragment = fragments.get(name)
    if fragment is None or name in visiting:
        return Measure()  # unknown or cyclic: validation refuses the document
    # A fragment on an introspection type (`on __Type`) is introspection wherever it is spread.
    on_meta_type = fragment.type_condition.name.value.startswith("__")
    found = _measure(fragment.selection_set, fragments, memo, visiting | {name}, on_meta_type)
    own = len(fragment.directives or ())
    found = dataclasses.replace(found, directives=found.directives + own)
    memo[name] = found
    return found
