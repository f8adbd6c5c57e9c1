"""The patient index's tables.

`patient_links` (which person each source record is) and `patient_identifiers` (which person an
identifier's keyed hash belongs to) are the original index; an index made before the matcher
has only these, and its links are re-checked as their records are next seen
(`app.identity.index`). `patient_records` keeps each record's demographics and how its link was
made, `patient_blocks` the keyed hashes of its blocking keys, `identity_reviews` what the
matcher held back for a person to decide, and `identity_operations` every decision an
administrator made, for the audit trail.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
_RECORD = (sa.Column("source_id", sa.String(64)), sa.Column("local_id", sa.String(128)))

patient_links = sa.Table(
    "patient_links",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("local_id", sa.String(128), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False, index=True),
)
patient_identifiers = sa.Table(
    "patient_identifiers",
    metadata,
    sa.Column("system", sa.String(255), primary_key=True),
    sa.Column("value_hash", sa.String(64), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False, index=True),
)
patient_records = sa.Table(
    "patient_records",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("local_id", sa.String(128), primary_key=True),
    sa.Column("demographics", sa.Text, nullable=False),  # app.identity.demographics, as JSON
    # identifier | score | new | manual | split (kept apart after a change contradicted) |
    # legacy (made by the identifier-only index, checked since)
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("detail", sa.Text, nullable=False),  # JSON: contributions, identifier system
    sa.Column("rule_version", sa.Integer, nullable=False),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("linked_by", sa.String(255), nullable=True),  # the administrator, if manual
)
patient_blocks = sa.Table(
    "patient_blocks",
    metadata,
    sa.Column("key_hash", sa.String(32), primary_key=True),
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("local_id", sa.String(128), primary_key=True),
)
identity_reviews = sa.Table(
    "identity_reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # conflict | possible_match
    sa.Column("reason", sa.String(32), nullable=False),
    *(sa.Column(c.name, c.type, nullable=False) for c in _RECORD),  # the record kept apart
    sa.Column("patient_id", sa.String(64), nullable=False),  # the person it was kept from
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("field", sa.String(32), nullable=True),  # the contradicting field, if any
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # open | linked | dismissed
)
identity_operations = sa.Table(
    "identity_operations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),  # link | unlink | dismiss
    *(sa.Column(c.name, c.type, nullable=False) for c in _RECORD),
    sa.Column("from_patient_id", sa.String(64), nullable=True),
    sa.Column("to_patient_id", sa.String(64), nullable=True),
    sa.Column("review_id", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
)


def same_record(left: sa.Table, right: sa.Table) -> sa.ColumnElement[bool]:
    """Join condition: both rows are about the same (source, local id) record."""
    return sa.and_(left.c.source_id == right.c.source_id, left.c.local_id == right.c.local_id)


def links_with_records() -> sa.Join:
    """Each link with its record's row (absent for links made before the matcher)."""
    return patient_links.outerjoin(patient_records, same_record(patient_records, patient_links))


def stored_demographics() -> sa.Select[tuple[str, str, str, str | None, str | None]]:
    """(source id, local id, patient id, stored demographics, link method; both None for a
    link made before the matcher) of linked records."""
    return sa.select(
        patient_links.c.source_id,
        patient_links.c.local_id,
        patient_links.c.patient_id,
        patient_records.c.demographics,
        patient_records.c.method,
    ).select_from(links_with_records())
