"""Authentication: bearer JWT -> Principal. (Authorization policy arrives with issue 4.)

`tokens.verify_access_token` is the only place that calls python-jose, so the JOSE library can
be swapped without touching anything else. May import `app.settings` only.
"""
