"""Upstream systems behind small, batch-shaped ports (`base.py`), errors mapped at the edge.

Each system has a sub-package (`fhir/`, later `hl7v2/`, `ncpdp/`) holding `source.py` (the
adapter) and `mapping.py` (upstream vocabulary -> `app.domain`). May import `app.domain`,
`app.settings` and `app.cache.sources` (HTTP answers go through the source cache); never
`schema` or `resolvers`.
"""
