"""HTTP: the GraphQL endpoint, GraphiQL, health checks and middleware (Starlette).

Handlers read the running services through `state.runtime_of(request)` (a typed `Runtime`,
built by `app.bootstrap` for the app's lifespan), never through the builder. May import
`schema`, `resolvers`, and the rest of `app` except `app.bootstrap`.
"""
