"""Upstream systems behind small, batch-shaped ports (`base.py`), errors mapped at the edge.

- `base.py`: the ports; `registry.py`: adapters built from settings, as typed tuples per port.
- `fetching.py`: the fetch port HTTP sources ask through (the cache implements it; `Direct`
  when there is none), with `singleflight.py` and `freshness.py` (when data was fetched).
- `errors.py`: the one error tree, and the one HTTP status and transport rule.
- `fhir/`, `hl7v2/`, `ncpdp/`: one sub-package per system, each with `source.py` (the adapter)
  and its mapping modules (upstream vocabulary -> `app.domain`).

May import `app.domain`, `app.settings` and `app.logging`; never `app.identity`, `app.cache`,
`app.auth`, `schema` or `resolvers` (what a source needs of them it is handed: a `Fetcher`, an
`on_ingested` callback).
"""
