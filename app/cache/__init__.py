"""Caches: whole GraphQL responses (per caller's rights) and upstream responses (shared),
over one backend interface with an in-process and a Redis implementation."""
