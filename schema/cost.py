"""Query cost: before anything runs, how much upstream work an operation can cause, and a
refusal when that is over the caller's budget.

Three figures, each an upper bound read from the document, the variables and the sources the
server has (`Fanout`):

- searches: upstream calls. `patient(id)`, `me` and `patients(...)` cost one per patient
  source; each collection field costs, for every patient it is selected on, one per source
  that serves its record kind (and its companion, pharmacy fills for `medications`).
- records: the nodes the response can hold, `first` (or the default page size) per page.
- patients: how many patients the response can name: `first` of each `patients(...)`, and
  each distinct id of `patient(id)` and `me`.

A page multiplies what is selected under it: `patients(first: 100) { nodes { observations } }`
is 100 observation searches per source. Fragments and aliases count once per use, `@skip` and
`@include` are not evaluated (the bound assumes every field is selected).

The document is compiled once per text and operation into a small `Step` tree (bounded LRU)
and that is evaluated against each request's variables, so a repeated query is not parsed
again; the estimate for a plan and the values of the variables it reads is remembered too.
Runs after `schema.limits.check_document`, which bounds depth, fragments and size.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    get_named_type,
    is_object_type,
    parse,
)

from resolvers.context import Services
from resolvers.pagination import PageLimits
from schema.limits import MAX_REMEMBERED, QueryRejected
from schema.patient import COLLECTIONS

PLANS_REMEMBERED = 512
COSTS_REMEMBERED = 4096  # (plan, variable values) -> Cost
MAX_MEMO_STRING = 128  # longer variable values (ids) are evaluated each time, never kept
ROOT_READS = frozenset({"patient", "me"})
PATIENT_SEARCH = "patients"
PATIENT_TYPE = "Patient"
ME = object()  # the patient of a patient-context token: one, whatever else is read


@dataclass(frozen=True, slots=True)
class Budget:
    """From `[graphql]` (`max_searches`, `max_records`, `max_patients`, `patients_by_role`)."""

    max_searches: int
    max_records: int
    max_patients: int
    patients_by_role: Mapping[str, int]

    def patients_for(self, roles: frozenset[str]) -> int:
        """The caller's roles' most generous patient budget, else the default."""
        own = [self.patients_by_role[r] for r in roles if r in self.patients_by_role]
        return max(own) if own else self.max_patients


@dataclass(frozen=True, slots=True)
class Cost:
    searches: int = 0
    records: int = 0
    patients: int = 0

    def as_extension(self) -> dict[str, int]:
        return {"searches": self.searches, "records": self.records, "patients": self.patients}


class OverBudget(QueryRejected):
    """The estimate is over the budget: the message says which figure; `extensions` carries
    the whole estimate and budget so a client can shrink its pages."""

    def __init__(self, message: str, cost: Cost, budget: Cost) -> None:
        super().__init__(message)
        self.extensions = {"cost": cost.as_extension(), "budget": budget.as_extension()}


@dataclass(frozen=True, slots=True)
class Fanout:
    """Upstream searches per use of each costed field, from the sources the server has."""

    patient_sources: int
    per_collection: Mapping[str, int]  # Patient collection field -> searches per patient
    page_limits: PageLimits


def fanout(services: Services) -> Fanout:
    per_collection = {}
    for name, collection in COLLECTIONS.by_name.items():
        kind, companion = collection.kind, collection.kind.companion
        linked = sum(kind.name in s.record_kinds for s in services.record_sources)
        people = 0
        if companion is not None:
            people = sum(companion.name in s.record_kinds for s in services.person_sources)
        per_collection[name] = linked + people
    return Fanout(len(services.patient_sources), per_collection, services.page_limits)


class Field(Enum):
    READ = "read"  # patient(id), me: one patient
    SEARCH = "search"  # patients(...): a page of patients
    COLLECTION = "collection"  # a page of one patient's records
    FRAGMENT = "fragment"  # a named fragment: one Step shared by all its spreads


# An argument as written: an int or string literal, a variable's name, or absent.
Argument = int | str | tuple[str] | None  # tuple[str]: the variable of that name


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    """One costed field and the costed fields selected under it (shared between the uses of
    one fragment: evaluated once per request, then multiplied)."""

    field: Field
    searches: int  # upstream searches per item of the selection it is in
    size: Argument  # `first` (SEARCH, COLLECTION) or the patient id (READ)
    children: tuple[Step, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """Compiled once per text and operation; hashed by identity (a key of the cost memo)."""

    steps: tuple[Step, ...]
    defaults: Mapping[str, Any]  # variable -> its default value in the operation
    variables: tuple[str, ...]  # the variables the estimate reads (`first`, patient ids)


class CostEstimator:
    def __init__(self, schema: GraphQLSchema, fanout: Fanout, budget: Budget) -> None:
        self._schema, self._fanout, self.budget = schema, fanout, budget
        self._plan = functools.lru_cache(maxsize=PLANS_REMEMBERED)(self._compile)
        self._costs = functools.lru_cache(maxsize=COSTS_REMEMBERED)(self._evaluate)

    def check(
        self,
        query: str,
        operation: str | None,
        variables: Mapping[str, Any] | None,
        roles: frozenset[str],
    ) -> Cost:
        """The estimate; raises OverBudget when it is over the budget for `roles`."""
        cost = self.estimate(query, operation, variables)
        budget = Cost(
            self.budget.max_searches,
            self.budget.max_records,
            self.budget.patients_for(roles),
        )
        for figure, what in (
            ("searches", "upstream searches"),
            ("records", "records"),
            ("patients", "patients"),
        ):
            if getattr(cost, figure) > getattr(budget, figure):
                raise OverBudget(
                    f"The query could cause {getattr(cost, figure)} {what}, more than the "
                    f"{getattr(budget, figure)} allowed: ask for smaller pages or fewer fields",
                    cost,
                    budget,
                )
        return cost

    def estimate(
        self, query: str, operation: str | None, variables: Mapping[str, Any] | None
    ) -> Cost:
        remembered = len(query) <= MAX_REMEMBERED
        plan = self._plan(query, operation) if remembered else self._compile(query, operation)
        if plan is None:
            return Cost()
        given = variables or {}
        # Only the variables the estimate reads, typed (so `true` and `1` differ), make the
        # key: a dashboard polled with the same page sizes is one dict lookup, not a walk.
        values = tuple(
            (name, type(value), value)
            for name in plan.variables
            for value in (given.get(name, plan.defaults.get(name)),)
        )
        if remembered and all(_memoizable(value) for _, _, value in values):
            return self._costs(plan, values)
        return self._evaluate(plan, values)

    def _evaluate(self, plan: Plan, values: tuple[tuple[str, type, Any], ...]) -> Cost:
        given = {name: value for name, _, value in values}
        return _Evaluation(plan, given, self._fanout.page_limits).total()

    def _compile(self, query: str, operation: str | None) -> Plan | None:
        """None for a document that does not parse or names no single operation: execution
        reports that, and nothing runs."""
        try:
            document = parse(query)
        except GraphQLError:
            return None
        chosen = _operation(document, operation)
        if chosen is None:
            return None
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        root = self._schema.get_root_type(chosen.operation)
        if root is None:
            return None
        compiler = _Compiler(self._schema, self._fanout, fragments)
        defaults = {
            v.variable.name.value: _literal(v.default_value)
            for v in chosen.variable_definitions or ()
            if v.default_value is not None
        }
        steps = compiler.steps(chosen.selection_set, root.name)
        return Plan(steps, defaults, _variables(steps))


def _memoizable(value: Any) -> bool:
    """Small scalars only: a list or object (validation refuses it) cannot be a key, and a
    long string would let a caller fill the memo with megabytes."""
    if isinstance(value, str):
        return len(value) <= MAX_MEMO_STRING
    return value is None or isinstance(value, int)


def _variables(steps: tuple[Step, ...]) -> tuple[str, ...]:
    """The variable names the steps' sizes read, each once (a fragment's Step once)."""
    names: dict[str, None] = {}
    seen: set[int] = set()
    pending = list(steps)
    while pending:
        step = pending.pop()
        if id(step) in seen:
            continue
        seen.add(id(step))
        if isinstance(step.size, tuple):
            names[step.size[0]] = None
        pending.extend(step.children)
    return tuple(sorted(names))


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def _literal(value: ValueNode | None) -> Any:
    if isinstance(value, IntValueNode):
        return int(value.value)
    if isinstance(value, StringValueNode):
        return value.value
    if isinstance(value, BooleanValueNode):
        return value.value
    return None


def _argument(field: FieldNode, name: str) -> Argument:
    for argument in field.arguments or ():
        if argument.name.value == name:
            if isinstance(argument.value, VariableNode):
                return (argument.value.name.value,)
            literal = _literal(argument.value)
            return literal if isinstance(literal, int | str) else None
    return None


class _Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        fanout: Fanout,
        fragments: Mapping[str, FragmentDefinitionNode],
    ) -> None:
        self._schema, self._fanout, self._fragments = schema, fanout, fragments
        self._query = schema.query_type.name if schema.query_type is not None else ""
        self._compiled: dict[str, tuple[Step, ...]] = {}  # () or (its one Step,)
        self._visiting: set[str] = set()

    def steps(self, selection_set: SelectionSetNode, parent: str) -> tuple[Step, ...]:
        """The costed fields in `selection_set` of type `parent`, or under its plain fields.
        Recursion is bounded by the document limits (depth, fragments) checked before."""
        found: list[Step] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                found.extend(self._field(selection, parent))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = condition.name.value if condition is not None else parent
                found.extend(self.steps(selection.selection_set, inner))
            elif isinstance(selection, FragmentSpreadNode):
                found.extend(self._fragment(selection.name.value))  # () or the shared Step
        return tuple(found)

    def _field(self, node: FieldNode, parent: str) -> tuple[Step, ...]:
        parent_type = self._schema.get_type(parent)
        if not is_object_type(parent_type) or node.selection_set is None:
            return ()
        definition = parent_type.fields.get(node.name.value)
        if definition is None:
            return ()  # validation reports it
        child_type = get_named_type(definition.type).name
        children = self.steps(node.selection_set, child_type)
        name, fanout = node.name.value, self._fanout
        if parent == self._query:
            if name in ROOT_READS:
                size: Argument = _argument(node, "id") if name == "patient" else None
                return (Step(Field.READ, fanout.patient_sources, size, children),)
            if name == PATIENT_SEARCH:
                first = _argument(node, "first")
                return (Step(Field.SEARCH, fanout.patient_sources, first, children),)
        if parent == PATIENT_TYPE and name in fanout.per_collection:
            first = _argument(node, "first")
            searches = fanout.per_collection[name]
            return (Step(Field.COLLECTION, searches, first, children),)
        return children  # a plain field: what is under it costs per item of this selection

    def _fragment(self, name: str) -> tuple[Step, ...]:
        if name in self._compiled:
            return self._compiled[name]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._visiting:
            return ()  # unknown or a cycle: validation reports it
        self._visiting.add(name)
        inner = self.steps(fragment.selection_set, fragment.type_condition.name.value)
        self._visiting.discard(name)
        # One node for every spread, not its fields copied into each: a fragment spread twice
        # at every level stays as small as it is written.
        compiled = (Step(Field.FRAGMENT, 0, None, inner),) if inner else ()
        self._compiled[name] = compiled
        return compiled


class _Evaluation:
    """One request's estimate: each Step's cost per item of its selection computed once (a
    fragment spread many times is shared), then multiplied by the items it is selected on."""

    def __init__(self, plan: Plan, variables: Mapping[str, Any], pages: PageLimits) -> None:
        self._plan, self._variables, self._pages = plan, variables, pages
        self._unit: dict[int, tuple[int, int, int]] = {}
        self._patient_ids: set[object] = set()

    def total(self) -> Cost:
        searches, records, patients = self._sum(self._plan.steps)
        return Cost(searches, records, patients + len(self._patient_ids))

    def _sum(self, steps: tuple[Step, ...]) -> tuple[int, int, int]:
        searches = records = patients = 0
        for step in steps:
            s, r, p = self._cost(step)
            searches, records, patients = searches + s, records + r, patients + p
        return searches, records, patients

    def _cost(self, step: Step) -> tuple[int, int, int]:
        known = self._unit.get(id(step))
        if known is not None:
            return known
        below = self._sum(step.children)
        if step.field is Field.FRAGMENT:
            items, records, patients = 1, 0, 0
        elif step.field is Field.READ:
            self._patient_ids.add(ME if step.size is None else repr(self._value(step.size)))
            items, records, patients = 1, 0, 0  # the read patient is counted by its id
        else:
            items = self._page(step.size)
            records, patients = items, items if step.field is Field.SEARCH else 0
        cost = (
            step.searches + items * below[0],
            records + items * below[1],
            patients + items * below[2],
        )
        self._unit[id(step)] = cost
        return cost

    def _value(self, argument: Argument) -> Any:
        if isinstance(argument, tuple):
            (name,) = argument
            return self._variables.get(name, self._plan.defaults.get(name))
        return argument

    def _page(self, first: Argument) -> int:
        value = self._value(first)
        if not isinstance(value, int) or isinstance(value, bool):
            return self._pages.default
        return min(max(value, 0), self._pages.maximum)  # beyond the maximum is refused anyway
