"""Who may write into charts through a lab listener: peer networks, then sending parties.

An MLLP listener is a write path into every patient's chart, so it admits only the networks
the source lists (checked at connect, before a byte is read) and, of those peers' messages,
only the sending application / facility it lists (MSH-3.1 / MSH-4.1, read before the body is
parsed). HEALTHCARE.md: a lab feed is only as trustworthy as its sender.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from app.sources.hl7v2.syntax import Separators, header_fields, unescape

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SenderPolicy:
    clients: tuple[Network, ...]
    # (application, facility); facility None admits any facility of that application. Empty
    # admits every sender: settings allow that only when every client network is loopback.
    senders: frozenset[tuple[str, str | None]]

    @classmethod
    def of(cls, clients: Iterable[str], senders: Iterable[str]) -> SenderPolicy:
        parties: set[tuple[str, str | None]] = set()
        for entry in senders:
            application, caret, facility = entry.partition("^")
            parties.add((application, facility if caret else None))
        return cls(
            tuple(ipaddress.ip_network(c, strict=False) for c in clients), frozenset(parties)
        )

    def admits_peer(self, host: str | None) -> bool:
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host.partition("%")[0])  # drop an IPv6 zone id
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers this way
        return any(address in network for network in self.clients)

    def admits_sender(self, text: str) -> bool:
        """Whether the decoded message `text` comes from a listed sending party."""
        if not self.senders:
            return True
        fields, seps = header_fields(text)
        application = _namespace(fields, 3, seps)
        facility = _namespace(fields, 4, seps)
        return bool(application) and (
            (application, None) in self.senders or (application, facility) in self.senders
        )


def _namespace(fields: list[str], n: int, seps: Separators) -> str:
    """HD.1 (namespace id) of MSH-n, unescaped; "" when absent."""
    value = fields[n - 1] if n <= len(fields) else ""
    first = value.split(seps.repetition)[0].split(seps.component)[0]
    return unescape(first, seps).strip()
