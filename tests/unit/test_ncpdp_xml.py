"""The hardened XML layer: attacks are refused without expansion or fetching, and the size limit
is checked before the parser runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from defusedxml import DTDForbidden
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app.demo.serving import serving
from app.sources.ncpdp import xml
from app.sources.ncpdp.xml import XmlError, parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Message [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Message xmlns="http://www.ncpdp.org/schema/SCRIPT"><Header><MessageID>&lol9;</MessageID>
</Header><Body/></Message>"""


def external_entity(system_id: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE Message [<!ENTITY xxe SYSTEM "{system_id}">]>\n'
        f"<Message><Header><MessageID>&xxe;</MessageID></Header><Body/></Message>"
    ).encode()


def assert_refused_as_dtd(raw: bytes) -> XmlError:
    started = time.perf_counter()
    with pytest.raises(XmlError) as raised:
        parse_xml(raw)
    assert time.perf_counter() - started < 0.5  # refused at the DOCTYPE, nothing expanded
    assert isinstance(raised.value.__cause__, DTDForbidden)
    return raised.value


def test_billion_laughs_is_refused_without_expansion() -> None:
    error = assert_refused_as_dtd(BILLION_LAUGHS)
    assert "lol" not in str(error)


def test_file_entity_is_refused_and_the_file_never_read(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-SECRET")
    for system_id in ("file:///etc/passwd", canary.as_uri()):
        error = assert_refused_as_dtd(external_entity(system_id))
        assert "CANARY" not in str(error)
        assert "root:" not in str(error)


def fetch_counter() -> tuple[Starlette, list[str]]:
    fetched: list[str] = []

    async def anything(request: Request) -> PlainTextResponse:
        fetched.append(request.url.path)
        return PlainTextResponse("<!ENTITY leak 'fetched'>")

    return Starlette(routes=[Route("/{path:path}", anything)]), fetched


async def test_http_entities_and_external_dtds_are_never_fetched() -> None:
    app, fetched = fetch_counter()
    async with serving(app) as base:
        attacks = [
            external_entity(f"{base}/entity"),
            f'<!DOCTYPE Message SYSTEM "{base}/dtd"><Message/>'.encode(),
            f'<!DOCTYPE Message [<!ENTITY % p SYSTEM "{base}/param"> %p;]><Message/>'.encode(),
        ]
        for raw in attacks:
            assert_refused_as_dtd(raw)
    assert fetched == []


def test_even_a_harmless_internal_dtd_is_refused() -> None:
    assert_refused_as_dtd(b"<!DOCTYPE Message [<!ELEMENT Message ANY>]><Message/>")


def test_oversized_input_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parser ran on an oversized document")

    monkeypatch.setattr("defusedxml.ElementTree.fromstring", must_not_parse)
    raw = b"<Message>" + b" " * (5 * 1024 * 1024) + b"</Message>"
    with pytest.raises(XmlError, match="larger than"):
        parse_xml(raw)
    with pytest.raises(XmlError, match="larger than 100 bytes"):
        parse_xml(b"<Message>" + b"x" * 100 + b"</Message>", max_bytes=100)


def test_the_limit_is_inclusive() -> None:
    raw = b"<Message/>"
    assert xml.local_name(parse_xml(raw, max_bytes=len(raw))) == "Message"


@pytest.mark.parametrize(
    "raw",
    [b"", b"not xml", b"<Message><Header></Message>", b"<Message>&undefined;</Message>"],
)
def test_malformed_documents_raise_xml_error_without_quoting_them(raw: bytes) -> None:
    with pytest.raises(XmlError, match="malformed XML") as raised:
        parse_xml(raw)
    assert "undefined" not in str(raised.value)


def test_local_names_ignore_the_namespace() -> None:
    for raw in (
        b'<Message xmlns="http://www.ncpdp.org/schema/SCRIPT"><Header><MessageID> A1 '
        b"</MessageID></Header></Message>",
        b"<Message><Header><MessageID>A1</MessageID></Header></Message>",
        b'<s:Message xmlns:s="urn:other"><s:Header><s:MessageID>A1</s:MessageID></s:Header>'
        b"</s:Message>",
    ):
        root = parse_xml(raw)
        assert xml.local_name(root) == "Message"
        assert xml.text(root, "Header", "MessageID") == "A1"


def test_text_of_missing_or_empty_elements_is_none() -> None:
    root = parse_xml(b"<Message><Empty/><Blank>  </Blank></Message>")
    assert xml.text(root, "Empty") is None
    assert xml.text(root, "Blank") is None
    assert xml.text(root, "Missing", "Deeper") is None
    assert xml.child(None, "Anything") is None


def test_building_escapes_markup_and_drops_characters_xml_cannot_hold() -> None:
    root = xml.new_message()
    hostile = 'O\'Brien <b>&amp; "x"\x00\x07\ud800'
    xml.add(root, "Name", hostile, Note=hostile)
    raw = xml.serialize(root)
    assert b"<b>" not in raw
    assert b"&lt;b&gt;&amp;amp;" in raw
    parsed = parse_xml(raw)
    name = xml.child(parsed, "Name")
    assert name is not None
    assert name.text == name.get("Note") == 'O\'Brien <b>&amp; "x"'
    assert parsed.tag == "{http://www.ncpdp.org/schema/SCRIPT}Message"
