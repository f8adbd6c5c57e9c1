"""Every fact once on the demo's dashboard: conditions, allergies, immunizations and
encounters that both demo EHRs report appear once, with both in `sources`; `merged: false`
still shows each EHR's record."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.conftest import ApiFactory, Upstream, fhir_source

CODE = "code { coding { system code } }"
FIELDS = {
    "conditions": f"{CODE} onset recordedDate",
    "allergies": CODE,
    "immunizations": "vaccine { coding { system code } } occurrence",
    "encounters": "class start end",
}


def query(merged: bool) -> str:
    flag = str(merged).lower()
    collections = " ".join(
        f"{name}(first: 100, merged: {flag}) {{ nodes {{ {fields} sources {{ sourceId }} }} }}"
        for name, fields in FIELDS.items()
    )
    return f"{{ patients(first: 10) {{ nodes {{ {collections} }} }} }}"


def fact(node: dict[str, Any]) -> str:
    """What the kind's rule compares, as text (sources left out)."""
    return repr(sorted((k, repr(v)) for k, v in node.items() if k != "sources"))


async def test_the_demo_dashboard_shows_each_fact_once(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    sources = [fhir_source(upstreams["hospital"]), fhir_source(upstreams["clinic"])]
    async with api_factory(sources) as api:
        merged = (await api.query(query(True))).json()
        unmerged = (await api.query(query(False))).json()
    assert "errors" not in merged, merged["errors"]
    for name in FIELDS:
        both = shown = shown_unmerged = 0
        for patient, raw in zip(
            merged["data"]["patients"]["nodes"], unmerged["data"]["patients"]["nodes"], strict=True
        ):
            nodes = patient[name]["nodes"]
            by_source = Counter((fact(n), n["sources"][0]["sourceId"]) for n in raw[name]["nodes"])
            # no fact twice unless one source itself reports it twice
            for key, count in Counter(fact(n) for n in nodes).items():
                assert count == max(c for (k, _), c in by_source.items() if k == key), (name, key)
            both += sum(
                1 for n in nodes if {s["sourceId"] for s in n["sources"]} == {"hospital", "clinic"}
            )
            shown += len(nodes)
            shown_unmerged += len(raw[name]["nodes"])
        assert both > 0, name  # the demo's EHRs share facts of every one of these kinds
        assert shown_unmerged == shown + both, name  # merged: false keeps every record
