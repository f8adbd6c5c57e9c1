"""GraphQL schema: thin Strawberry types over domain records, one module per domain noun.

Types describe shape; their fields read domain dataclasses directly (same attribute names), so
plain fields need no resolver. May import `resolvers` and `app.domain`; never a source.
"""
