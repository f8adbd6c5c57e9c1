"""What an upstream's answer may cost us: its body is read as it streams in and refused as
soon as it passes the source's byte limit, so a huge or endless answer costs at most the
limit, never the whole body buffered first (one 50 MB FHIR Bundle once cost 1.5 GiB)."""

from __future__ import annotations

import httpx

from app.sources.errors import SourceTooLarge

SIZE_LIMIT = "response exceeds the size limit"


async def read_capped(source_id: str, response: httpx.Response, max_bytes: int) -> bytes:
    """The (decoded) body of a streamed response, at most `max_bytes` of it, or SourceTooLarge.

    The limit applies after content decoding, so a small gzip bomb is refused as well."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise SourceTooLarge(source_id, SIZE_LIMIT)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise SourceTooLarge(source_id, SIZE_LIMIT)
    return bytes(body)
