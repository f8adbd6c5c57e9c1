"""Hardened XML for NCPDP SCRIPT: untrusted bytes in, navigation by local name, safe building.

Parsing goes through defusedxml with every guard on (no DTD at all, so no internal or external
entities and no entity expansion) after a size check made before the parser sees a byte.

SCRIPT documents put every element in the `http://www.ncpdp.org/schema/SCRIPT` namespace (the
XSD's targetNamespace, the same for 2017071 and later versions); some senders omit it or use a
network's own namespace, so lookups here match local names and ignore the namespace.

Building (our requests, the demo pharmacy's answers) uses the stdlib ElementTree serializer,
which escapes `&`, `<`, `>` and quotes; characters XML 1.0 forbids (most C0 controls, lone
surrogates) are removed first, since no escape can carry them.
"""

from __future__ import annotations

import re
from typing import Final
from xml.etree.ElementTree import Element, ParseError, SubElement, tostring

import defusedxml.ElementTree as defused
from defusedxml import DefusedXmlException

NCPDP_NS: Final = "http://www.ncpdp.org/schema/SCRIPT"
SCRIPT_VERSION: Final = "2017071"
DEFAULT_MAX_BYTES: Final = 5 * 1024 * 1024

# XML 1.0 section 2.2 `Char`: everything outside it is illegal even as a character reference.
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class XmlError(ValueError):
    """Not a readable XML document: too large, malformed, or using a forbidden construct.

    Messages never quote the document (it may hold patient data)."""


def parse_xml(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Element:
    """The root element of `raw`; raises XmlError. The size is checked before parsing."""
    if len(raw) > max_bytes:
        raise XmlError(f"document is larger than {max_bytes} bytes")
    try:
        return defused.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:  # DTDForbidden, EntitiesForbidden, ExternalReference...
        raise XmlError(f"forbidden XML construct ({exc.__class__.__name__})") from exc
    except ParseError as exc:
        line, column = exc.position
        raise XmlError(f"malformed XML at line {line}, column {column}") from exc


# --- reading by local name ------------------------------------------------------------------------


def local_name(element: Element) -> str:
    """`{http://www.ncpdp.org/schema/SCRIPT}Message` -> `Message`."""
    return element.tag.rpartition("}")[2]


def child(parent: Element | None, *path: str) -> Element | None:
    """The first element along `path` of direct children, or None."""
    node = parent
    for name in path:
        if node is None:
            return None
        node = next((c for c in node if local_name(c) == name), None)
    return node


def text(parent: Element | None, *path: str) -> str | None:
    """Stripped text of the element at `path` (the element itself when no path); empty -> None."""
    node = child(parent, *path)
    value = node.text.strip() if node is not None and node.text else ""
    return value or None


# --- building -------------------------------------------------------------------------------------


def clean(value: str) -> str:
    """`value` without the characters XML 1.0 cannot represent at all."""
    return _NOT_XML_CHAR.sub("", value)


def new_message(version: str = SCRIPT_VERSION) -> Element:
    """`<Message xmlns="http://www.ncpdp.org/schema/SCRIPT" version="...">`: children added with
    `add` inherit the default namespace when serialized."""
    return Element("Message", {"xmlns": NCPDP_NS, "version": version})


def add(parent: Element, tag: str, value: str | None = None, **attrib: str) -> Element:
    element = SubElement(parent, tag, {k: clean(v) for k, v in attrib.items()})
    if value is not None:
        element.text = clean(value)
    return element


def serialize(root: Element) -> bytes:
    document: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return document
