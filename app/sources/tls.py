"""TLS to an HTTP upstream: what verifies it, and the client certificate it may ask for (mTLS);
and TLS for the MLLP listener, with the client certificates it may require of lab senders.

TLS 1.2 at least, certificates and host names always verified (Python's default context).
`ca_file` replaces the system trust store for that upstream: a private CA is then the only
one believed for it.
"""

from __future__ import annotations

import ssl

from app.settings import FhirSourceSettings, Hl7v2SourceSettings, NcpdpSourceSettings


def client_context(settings: FhirSourceSettings | NcpdpSourceSettings) -> ssl.SSLContext:
    cafile = None if settings.ca_file is None else str(settings.ca_file)
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert_file is not None and settings.client_key_file is not None:
        context.load_cert_chain(settings.client_cert_file, settings.client_key_file)
    return context


def listener_context(settings: Hl7v2SourceSettings) -> ssl.SSLContext | None:
    """The MLLP listener's TLS, when it has a certificate; None: plain MLLP."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file is not None:
        context.load_verify_locations(cafile=str(settings.tls_client_ca_file))
        context.verify_mode = ssl.CERT_REQUIRED  # no certificate from that CA, no connection
    return context
