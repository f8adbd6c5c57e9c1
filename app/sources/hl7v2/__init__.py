"""HL7 v2 lab feed: ORU^R01 messages pushed by a laboratory over MLLP.

- `mapping.py`: the anti-corruption layer. `parse_message` turns one raw ORU^R01 (bytes or
  text, tolerant of real-world framing and encoding quirks) into a `LabMessage` of domain
  records (`SourcePatient`, `DiagnosticReport`, `Observation`) with stable keys that detect
  corrections and redeliveries, or raises `MessageRejected` (AE/AR) with a PHI-free reason.
- `ack.py`: `build_ack`, the original-mode acknowledgement (AA/AE/AR) for any input, even
  garbage.
- `mllp.py`: the MLLP transport; `store.py`: durable, versioned storage of mapped messages.

Field references in comments (`OBX-5`, `PID-3`, table 0085, ...) are to HL7 v2.5.1 unless
a version is named.
"""
