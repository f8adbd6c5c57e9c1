"""Authentication: bearer JWT -> Principal. (Authorization policy arrives with issue 4.)

`tokens.verify_access_token` is the only place that calls python-jose, so the JOSE library can
be swapped without touching anything else. `fingerprint.py` digests what a response may
depend on about its caller, for the response cache. May import `app.settings` only.
"""
