"""HL7 v2 lab feed: ORU^R01 messages pushed by a laboratory over MLLP.

- `mapping.py`: the anti-corruption layer. `parse_message` turns one raw ORU^R01 (bytes or
  text, tolerant of real-world framing and encoding quirks) into a `LabMessage` of domain
  records (`SourcePatient`, `DiagnosticReport`, `Observation`) with stable keys that detect
  corrections and redeliveries, or raises `MessageRejected` (AE/AR) with a PHI-free reason.
- `syntax.py`: below the mapping: decoding (BOM, Latin-1 fallback), MSH separators, segment
  splitting across CR / LF / CRLF, escape / unescape, the segment tree and its `Reader`,
  DTM/TS timestamps, coding system names.
- `values.py`: OBX-5 values by OBX-2 type (NM, SN, ST/TX/FT, CE/CWE, DT/TS, ...), OBX-6 units
  and OBX-7 reference ranges.
- `patient.py`: PID identifiers (CX), name (XPN), birth date and administrative sex.
- `ack.py`: `build_ack`, the original-mode acknowledgement (AA/AE/AR) for any input, even
  garbage.
- `mllp.py`: the MLLP transport; `store.py`: durable, versioned storage of mapped messages.

Field references in comments (`OBX-5`, `PID-3`, table 0085, ...) are to HL7 v2.5.1 unless
a version is named.
"""
