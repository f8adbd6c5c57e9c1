"""PatientGraph: everything that is not GraphQL (settings, auth, sources, identity, demo).

`app.main` is the composition root; `app.domain` imports nothing else from the project.
"""

__version__ = "0.1.0"
