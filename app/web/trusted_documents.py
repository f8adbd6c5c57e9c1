"""Trusted documents: an allowlist of the operations a deployment's own clients send, so a
public endpoint runs nothing else (`[graphql] trusted_documents`).

The manifest is a JSON object `{"sha256:<hex>": "<document text>"}`, each key the SHA-256 of
its text's UTF-8 bytes, as GraphQL Codegen's persisted documents and `patientgraph
trusted-documents` write it. A request sends either the text (`query`) or only its id
(`documentId`, which also keeps the text out of the request). Modes:

- `off`: any document runs; `documentId` is still resolved when a manifest is configured.
- `log`: any document runs; one not in the manifest is logged by its hash (never its text),
  to learn what clients send before enforcing.
- `enforce`: only documents in the manifest run; any other is 400 `QUERY_REJECTED`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import orjson

from schema.limits import QueryRejected

log = logging.getLogger(__name__)
Mode = Literal["off", "log", "enforce"]
PREFIX = "sha256:"


class ManifestError(ValueError):
    """The manifest cannot be read, or an id is not the hash of its text."""


def document_id(text: str) -> str:
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()


def manifest(texts: Iterable[str]) -> dict[str, str]:
    return {document_id(text): text for text in texts}


def load_manifest(path: Path) -> dict[str, str]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read {path.name}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path.name} must be a JSON object of id -> document")
    for key, text in data.items():
        if not isinstance(text, str) or key != document_id(text):
            raise ManifestError(f"{path.name}: {key!r} is not the sha256 of its document")
    return data


class TrustedDocuments:
    def __init__(self, mode: Mode, documents: Mapping[str, str]) -> None:
        self.mode = mode
        self._documents = dict(documents)
        self._trusted = frozenset(documents.values())

    def resolve(self, query: str | None, requested_id: str | None) -> str:
        """The document text to run; raises ValueError (unknown id, neither sent) or
        QueryRejected (enforce, a text not in the manifest)."""
        if requested_id is not None:
            text = self._documents.get(requested_id)
            if text is None:
                raise ValueError("Unknown documentId")
            if query is not None and query != text:
                raise ValueError("'query' and 'documentId' name different documents")
            return text
        if query is None:
            raise ValueError("'query' must be a non-empty string")
        if self.mode != "off" and query not in self._trusted:
            if self.mode == "enforce":
                raise QueryRejected("Only trusted documents are accepted here")
            log.warning("untrusted document %s", document_id(query))
        return query


def trusted_documents(mode: Mode, path: Path | None) -> TrustedDocuments:
    return TrustedDocuments(mode, load_manifest(path) if path is not None else {})
