"""HTTP: the GraphQL endpoint, GraphiQL, health checks and middleware (Starlette).

May import `schema`, `resolvers`, and the rest of `app`; `app.main` wires it together.
"""
