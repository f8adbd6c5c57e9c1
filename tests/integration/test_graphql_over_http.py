"""GraphQL over HTTP on a real server: media-type negotiation and its status codes, queries
over GET (never mutations), 415 for bodies that are not JSON, CORS from an allowlist and gzip
above a size threshold."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest

from tests.conftest import Api, ApiFactory, Upstream, fhir_source

GRAPHQL_RESPONSE = "application/graphql-response+json"
QUERY = "query($n: Int) { patients(first: $n) { totalCount nodes { id } } }"


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE};q=0.5", "application/json"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),
    ],
)
async def test_the_response_media_type_is_negotiated(
    api: Api, accept: str | None, media: str
) -> None:
    headers = api.signer.headers()
    if accept is not None:
        headers["accept"] = accept
    ok = await api.client.post(
        f"{api.url}/graphql", json={"query": QUERY, "variables": {"n": 1}}, headers=headers
    )
    bad = await api.client.post(
        f"{api.url}/graphql", json={"query": "{ patientz { id } }"}, headers=headers
    )
    assert ok.status_code == 200
    assert ok.headers["content-type"] == media
    assert ok.json()["data"]["patients"]["totalCount"] > 0
    assert bad.status_code == 400
    assert bad.headers["content-type"] == media
    # graphql-response+json: a request that could not run has no `data` entry at all.
    assert ("data" in bad.json()) is (media == "application/json")


async def test_a_client_accepting_neither_type_gets_406(
    api: Api, upstreams: dict[str, Upstream]
) -> None:
    before = sum(len(u.requests) for u in upstreams.values())
    for accept in ("text/html", "application/xml", f"{GRAPHQL_RESPONSE};q=0"):
        response = await api.client.post(
            f"{api.url}/graphql",
            json={"query": QUERY},
            headers={**api.signer.headers(), "accept": accept},
        )
        assert response.status_code == 406, accept
    assert sum(len(u.requests) for u in upstreams.values()) == before


async def test_queries_run_over_get_with_the_same_answer_as_post(api: Api) -> None:
    params = {"query": QUERY, "variables": json.dumps({"n": 2})}
    got = await api.client.get(f"{api.url}/graphql", params=params, headers=api.signer.headers())
    posted = await api.query(QUERY, {"n": 2})
    assert got.status_code == 200
    assert got.json()["data"] == posted.json()["data"]
    assert len(got.json()["data"]["patients"]["nodes"]) == 2
    anonymous = await api.client.get(f"{api.url}/graphql", params=params)
    assert anonymous.status_code == 401
    broken = await api.client.get(
        f"{api.url}/graphql",
        params={"query": QUERY, "variables": "{not json"},
        headers=api.signer.headers(),
    )
    assert broken.status_code == 400


async def test_a_mutation_over_get_is_405_and_does_not_run(api: Api) -> None:
    mutation = 'mutation { purgePatientCache(patientId: "p") { responses } }'
    response = await api.client.get(
        f"{api.url}/graphql",
        params={"query": mutation},
        headers=api.signer.headers("admin", scope="patientgraph/cache.purge user/*.rs"),
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_bodies_that_are_not_json_are_415(api: Api) -> None:
    """The simple (CSRF-able) types never run, whatever the body holds."""
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = await api.client.post(
            f"{api.url}/graphql",
            content=orjson.dumps({"query": QUERY}),
            headers={**api.signer.headers(), "content-type": content_type},
        )
        assert response.status_code == 415, content_type


async def test_cors_allows_only_the_configured_origins(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    allowed = "https://portal.example"
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, server={"cors_origins": [allowed]}) as api:
        preflights = {
            origin: await api.client.options(
                f"{api.url}/graphql",
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization, content-type",
                },
            )
            for origin in (allowed, "https://evil.example")
        }
        actual = await api.client.post(
            f"{api.url}/graphql",
            json={"query": QUERY},
            headers={**api.signer.headers(), "origin": allowed},
        )
    assert preflights[allowed].status_code == 200
    assert preflights[allowed].headers["access-control-allow-origin"] == allowed
    assert preflights["https://evil.example"].status_code == 400
    assert "access-control-allow-origin" not in preflights["https://evil.example"].headers
    assert actual.headers["access-control-allow-origin"] == allowed
    assert "access-control-allow-credentials" not in actual.headers


async def test_large_responses_are_gzipped_for_clients_that_accept_it(api: Api) -> None:
    big = await api.client.post(
        f"{api.url}/graphql",
        json={"query": QUERY, "variables": {"n": 50}},
        headers={**api.signer.headers(), "accept-encoding": "gzip"},
    )
    assert big.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in big.headers["vary"].lower()
    assert big.json()["data"]["patients"]["nodes"]  # httpx decoded it
    small = await api.client.post(
        f"{api.url}/graphql",
        json={"query": "{ patients(first: 1) { totalCount } }"},
        headers={**api.signer.headers(), "accept-encoding": "gzip"},
    )
    assert "content-encoding" not in small.headers  # under gzip_min_bytes
    plain = await api.client.post(
        f"{api.url}/graphql",
        json={"query": QUERY, "variables": {"n": 50}},
        headers={**api.signer.headers(), "accept-encoding": "identity"},
    )
    assert "content-encoding" not in plain.headers
    assert len(gzip.compress(plain.content)) < len(plain.content)
    for other in ("br", "deflate, zstd"):  # encodings we do not offer: identity
        response = await api.client.post(
            f"{api.url}/graphql",
            json={"query": QUERY, "variables": {"n": 50}},
            headers={**api.signer.headers(), "accept-encoding": other},
        )
        assert "content-encoding" not in response.headers
        assert response.json()["data"] == plain.json()["data"]
