"""NCPDP SCRIPT medication history: pharmacy fills for a person, found by demographics.

`xml` parses untrusted XML safely (defusedxml: no DTD, no entities, bounded size), `messages`
builds the `RxHistoryRequest` and reads the `RxHistoryResponse` (SCRIPT 2017071), `mapping`
turns each `MedicationDispensed` into a `MedicationDispense`, and `source` is the
`PersonRecordSource` that asks one pharmacy endpoint about many people concurrently.
"""
