"""PatientGraph: everything that is not GraphQL (bootstrap, web, auth, sources, identity,
cache, settings, demo).

`app.bootstrap` is the one composition root; `app.domain` imports nothing else from the
project. The layers and who may import whom: the README's "Layout" and the import contract in
`pyproject.toml` (`lint-imports`, part of `make test`).
"""

__version__ = "0.1.0"
