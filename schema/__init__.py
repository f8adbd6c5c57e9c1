"""GraphQL schema: thin Strawberry types over domain records, one module per domain noun.

Types describe shape; their fields read domain dataclasses directly (same attribute names), so
plain fields need no resolver. `collections.py` makes every paged collection field,
`field_rules.py` nulls denied fields, `prefetch.py` and `fast_paths.py` hold the speed work.
May import `resolvers`, `app.domain`, `app.auth`, `app.settings` and `app.logging`; never a
source, the cache or the index.
"""
