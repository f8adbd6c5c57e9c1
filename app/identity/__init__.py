"""Patient index: links source-local patients into one stable, opaque PatientGraph id.

May import `app.domain` (and, like every service, `app.settings` and `app.store`); nothing
here knows about HTTP or GraphQL.
"""
