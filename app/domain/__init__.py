"""Domain records: frozen dataclasses shared by every layer.

`records.py` holds `RecordKind`: everything known about one record kind, in one entry per kind.
Imports nothing else from the project. FHIR/HL7/NCPDP vocabulary never reaches here: the
source mappings translate into these types.
"""
