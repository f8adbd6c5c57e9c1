"""Caches: whole GraphQL responses (per caller's rights) and upstream responses (shared),
over one backend interface with an in-process and a Redis implementation.

A leaf behind ports its users own: the source cache implements `app.sources.fetching.Fetcher`;
the response cache is keyed by the caller's fingerprint digest (`app.auth.fingerprint`) and the
purger is handed a callable for a patient's links. May import `app.sources.fetching` (and the
fetch port's `singleflight`, `freshness`), `app.domain` and `app.settings.CacheSettings`;
never `app.auth`, `app.identity` or `app.store`.
"""
