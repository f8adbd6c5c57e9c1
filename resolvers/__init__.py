"""Resolvers: async functions over a per-request Context that return domain records.

May import `app.domain`, `app.sources` (ports and errors only), `app.identity`, `app.auth`;
never Strawberry, httpx or any wire format. `loaders.py` owns batching, `merge.py` owns how
records from several sources become one view.
"""
