"""The embedded demo: synthetic data generator, demo upstreams, and the runner that starts them.

May import anything in `app`; nothing outside `app.demo` and `app.cli` imports it, except the
demo clinician's identity re-exported here: `DEMO_CLINICIAN` (the name the demo signs in as),
`clinician_npi(name)` and `practitioner_identifier(name)` (`system|value`, NPI system
`NPI_SYSTEM`), the same NPIs the demo EHRs put on encounter participants and care-team
members.
"""

from app.demo.catalog import NPI_SYSTEM as NPI_SYSTEM
from app.demo.contacts import DEMO_CLINICIAN as DEMO_CLINICIAN
from app.demo.contacts import clinician_npi as clinician_npi
from app.demo.contacts import practitioner_identifier as practitioner_identifier
