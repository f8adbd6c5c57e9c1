"""Domain records: frozen dataclasses shared by every layer.

Imports nothing else from the project. FHIR/HL7/NCPDP vocabulary never reaches here: the
source mappings translate into these types.
"""
