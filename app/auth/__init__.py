"""Authentication and authorization decisions: bearer JWT -> Principal (`tokens.py`, the only
place that calls python-jose), SMART scopes (`scopes.py`), the policy that decides an `Access`
per request (`policy.py`, `decisions.py`), break-the-glass, and the caller fingerprint the
response cache is keyed by (`fingerprint.py`). Enforcing a decision is `resolvers.access`.

May import `app.domain`, `app.settings` and `app.logging`; never sources, cache or identity.
"""
