"""TLS to an HTTP upstream: what verifies it, and the client certificate it may ask for (mTLS).

TLS 1.2 at least, certificates and host names always verified (Python's default context).
`ca_file` replaces the system trust store for that upstream: a private CA is then the only
one believed for it.
"""

from __future__ import annotations

import ssl

from app.settings import FhirSourceSettings, NcpdpSourceSettings


def client_context(settings: FhirSourceSettings | NcpdpSourceSettings) -> ssl.SSLContext:
    cafile = None if settings.ca_file is None else str(settings.ca_file)
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert_file is not None and settings.client_key_file is not None:
        context.load_cert_chain(settings.client_cert_file, settings.client_key_file)
    return context
