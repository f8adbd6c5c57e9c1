"""Bad requests get clear, coded answers; nothing bad reaches an upstream."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import AUDIENCE, Api, ApiFactory, Upstream, fhir_source


async def post(api: Api, body: bytes | str, content_type: str = "application/json", **headers: str):  # type: ignore[no-untyped-def]
    return await api.client.post(
        f"{api.url}/graphql",
        content=body,
        headers={"content-type": content_type, **api.signer.headers(), **headers},
    )


def codes(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["extensions"]["code"] for e in response.json()["errors"]]


async def test_malformed_graphql(api: Api) -> None:
    response = await api.query("{ patients(first: 1) { nodes { id }")
    assert response.status_code == 400
    assert codes(response) == ["BAD_USER_INPUT"]
    assert "Syntax Error" in response.json()["errors"][0]["message"]


async def test_unknown_field_is_rejected_before_execution(
    api: Api, upstreams: dict[str, Upstream]
) -> None:
    response = await api.query("{ patients { nodes { ssn } } }")
    assert response.status_code == 400
    assert codes(response) == ["BAD_USER_INPUT"]
    assert all(not u.requests for u in upstreams.values())


@pytest.mark.parametrize("bad_id", ["../../Patient/1", "pg-", "1' OR '1'='1", "pg-XYZ", "x" * 500])
async def test_malformed_patient_id(api: Api, upstreams: dict[str, Upstream], bad_id: str) -> None:
    response = await api.query("query($id: ID!) { patient(id: $id) { id } }", {"id": bad_id})
    body = response.json()
    assert response.status_code == 200
    assert body["data"] == {"patient": None}
    assert codes(response) == ["BAD_USER_INPUT"]
    assert bad_id not in body["errors"][0]["message"]
    assert all(not u.requests for u in upstreams.values())


async def test_unknown_patient_is_null_without_errors(api: Api) -> None:
    response = await api.query('{ patient(id: "pg-000000000000000000000000") { id } }')
    assert response.json() == {"data": {"patient": None}}


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ('{ patients(birthDate: "2024-02-30") { totalCount } }', "Date"),
        ('{ patients(birthDate: "yesterday") { totalCount } }', "Date"),
        ("{ patients(first: 1000) { totalCount } }", "first"),
        ("{ patients(first: -1) { totalCount } }", "first"),
        ('{ patients(after: "bm90LWEtY3Vyc29y") { totalCount } }', "cursor"),
        (
            '{ patients(first: 1) { nodes { observations(since: "soon") { totalCount } } } }',
            "DateTime",
        ),
    ],
)
async def test_bad_arguments(api: Api, query: str, fragment: str) -> None:
    response = await api.query(query)
    assert "BAD_USER_INPUT" in codes(response)
    assert fragment in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "fragment", "status"),
    [
        (b"{not json", "application/json", "JSON", 400),
        (b"[1, 2]", "application/json", "object", 400),
        (b'{"query": 5}', "application/json", "query", 400),
        (b'{"query": "{ me { id } }", "variables": [1]}', "application/json", "variables", 400),
        (b"query { me { id } }", "application/graphql", "Content-Type", 415),
    ],
)
async def test_bad_http_bodies(
    api: Api, body: bytes, content_type: str, fragment: str, status: int
) -> None:
    response = await post(api, body, content_type)
    assert response.status_code == status
    assert codes(response) == ["BAD_USER_INPUT"]
    assert fragment in response.json()["errors"][0]["message"]


async def test_oversized_body_is_413(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, server={"max_body_bytes": 2048}) as api:
        padding = " " * 3000
        big = await post(api, f'{{"query": "{{ me {{ id }} }}{padding}"}}')
        small = await post(api, '{"query": "{ me { id } }"}')
    assert big.status_code == 413
    assert codes(big) == ["QUERY_REJECTED"]
    assert small.status_code == 200


async def test_mutations_and_subscriptions_are_not_served(api: Api) -> None:
    response = await api.query("mutation { x }")
    assert response.status_code == 400


# ---- authentication -------------------------------------------------------------------------


def assert_unauthenticated(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "data" not in body


async def test_missing_token(api: Api, upstreams: dict[str, Upstream]) -> None:
    response = await api.client.post(f"{api.url}/graphql", json={"query": "{ me { id } }"})
    assert_unauthenticated(response)
    assert all(not u.requests for u in upstreams.values())


@pytest.mark.parametrize(
    "overrides",
    [
        {"ttl_seconds": -120},  # expired beyond the leeway
        {"audience": "someone-else"},
        {"issuer": "https://evil.example/"},
    ],
)
async def test_rejected_tokens(api: Api, overrides: dict[str, Any]) -> None:
    token = api.signer.token(**overrides)
    response = await api.client.post(
        f"{api.url}/graphql",
        json={"query": "{ me { id } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_unauthenticated(response)


async def test_token_from_untrusted_key(api: Api) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from app.auth.signing import issue_token

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = issue_token(
        stranger, issuer="https://issuer.test/", audience=AUDIENCE, subject="x", kid=api.signer.kid
    )
    response = await api.client.post(
        f"{api.url}/graphql",
        json={"query": "{ me { id } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_unauthenticated(response)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "token"])
async def test_malformed_authorization_header(api: Api, header: str) -> None:
    response = await api.client.post(
        f"{api.url}/graphql", json={"query": "{ me { id } }"}, headers={"Authorization": header}
    )
    assert_unauthenticated(response)


async def test_token_in_query_string_is_refused(api: Api) -> None:
    token = api.signer.token()
    response = await api.client.post(
        f"{api.url}/graphql?access_token={token}",
        json={"query": "{ me { id } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_unauthenticated(response)


async def test_expiry_leeway_is_small(api: Api) -> None:
    just_expired = api.signer.token(ttl_seconds=-5)  # within the 30 s leeway: accepted
    response = await api.client.post(
        f"{api.url}/graphql",
        json={"query": "{ me { id } }"},
        headers={"Authorization": f"Bearer {just_expired}"},
    )
    assert response.status_code == 200
    assert time.time() > 0


@pytest.mark.parametrize(
    "server", [{"introspection": False, "graphiql": False}, {"production": True}]
)
async def test_introspection_can_be_disabled(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], server: dict[str, Any]
) -> None:
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, server=server) as api:
        introspect = await api.query("{ __schema { types { name } } }")
        normal = await api.query("{ me { id } }")
        typo = await api.query("{ patientz(id: 1) { id } }")
        syntax = await api.query("{ patient(id: ")
        page = await api.client.get(f"{api.url}/graphql", headers={"accept": "text/html"})
    assert introspect.status_code == 400
    assert "introspection" in introspect.json()["errors"][0]["message"]
    assert normal.status_code == 200
    # No page: a GET is then a GraphQL request, and this one accepts only HTML.
    assert page.status_code == 406
    assert page.headers["content-type"] == "application/json"
    # No suggestions and no type names to rebuild the schema from; syntax errors stay useful.
    (hidden,) = typo.json()["errors"]
    assert typo.status_code == 400
    assert "patient" not in hidden["message"]
    assert "Query" not in hidden["message"]
    assert hidden["extensions"]["code"] == "BAD_USER_INPUT"
    assert syntax.json()["errors"][0]["message"].startswith("Syntax Error")
