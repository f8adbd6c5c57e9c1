"""Resolvers: async functions over a per-request Context that return domain records.

`access.py` enforces every access decision (one `decide`), `records.py` and `patients.py`
compose what sources answer, `loaders.py` owns batching, `merge.py` owns how records from
several sources become one view, `fan_out.py` asks sources concurrently. May import
`app.domain`, `app.sources` (ports and errors only), `app.identity`, `app.cache` (purging),
`app.auth`; never Strawberry, graphql-core, httpx or any wire format.
"""
