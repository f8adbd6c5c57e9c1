"""The audit trail: every disclosure of PHI and every access decision, append-only and
hash-chained so a changed, removed, inserted or reordered event is detected.

May import `app.domain`, `app.settings` and `app.store`; nothing here knows about HTTP or
GraphQL (the web layer says what was disclosed).
"""
