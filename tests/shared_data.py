"""The shared third-party test data (`../shared/data` from the project root).

It is present on development machines and in CI, never on a user's machine, and is never
copied into this repository (see its README). Tests that read it are marked
`@pytest.mark.shared_data` and call `require_shared_data()`, which skips with a reason when
the folder is absent, except in CI (`CI=true`), where its absence is a failure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA: Path = PROJECT_ROOT.parent / "shared" / "data"

Resource = dict[str, Any]


def require_shared_data() -> Path:
    """The shared data folder; skips the test when it is absent (fails instead in CI)."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    reason = f"shared test data not found at {SHARED_DATA} (expected ../shared/data)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; it must be present in CI")
    pytest.skip(reason)


def load_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def iter_fhir_resources(path: Path, *, ids_from_full_url: bool = False) -> Iterator[Resource]:
    """Every FHIR resource in a JSON file: a Bundle's `entry[].resource` (nested Bundles
    recursively), or the file's single resource.

    `ids_from_full_url`: a `POST` transaction entry may carry no `id` (the server assigns one);
    with this flag such a resource is yielded as a copy with the id a server would give it, the
    last segment of its `fullUrl` (`urn:uuid:<uuid>` -> `<uuid>`). Off by default, so
    resources are yielded exactly as stored.
    """
    data = load_json(path)
    if not isinstance(data, Mapping):
        raise TypeError(f"{path}: not a FHIR resource (a JSON {type(data).__name__})")
    yield from _resources(data, None, ids_from_full_url=ids_from_full_url)


def _resources(
    resource: Mapping[str, Any], full_url: str | None, *, ids_from_full_url: bool
) -> Iterator[Resource]:
    if resource.get("resourceType") != "Bundle":
        if ids_from_full_url and not resource.get("id") and full_url:
            yield {**resource, "id": full_url.rsplit("/", 1)[-1].rsplit(":", 1)[-1]}
        else:
            yield dict(resource)
        return
    entries = resource.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        inner = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(inner, Mapping):
            url = entry.get("fullUrl")
            yield from _resources(
                inner, url if isinstance(url, str) else None, ids_from_full_url=ids_from_full_url
            )
