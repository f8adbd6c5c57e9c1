"""Hostile requests over HTTP (issue 10, first part): malformed inputs that once gave HTTP 500
or a silently wrong answer are refused cleanly, and make no upstream call."""

from __future__ import annotations

import base64
import json
import re
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.conftest import AUDIENCE, ISSUER, Api, Upstream

TWO_OPERATIONS = "query A { patients(first: 1) { totalCount } } query B { me { id } }"


def upstream_calls(upstreams: dict[str, Upstream]) -> int:
    return sum(len(u.requests) for u in upstreams.values())


def nested(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = {"v": value}
    return value


async def test_variables_nested_too_deep_are_a_400_not_a_500(
    api: Api, upstreams: dict[str, Upstream]
) -> None:
    before = upstream_calls(upstreams)
    query = "query($v: String) { patients(family: $v, first: 1) { totalCount } }"
    deep = await api.query(query, {"v": "ot", "extra": nested(300)})
    assert deep.status_code == 400
    (error,) = deep.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "nest" in error["message"]
    assert upstream_calls(upstreams) == before
    shallow = await api.query(query, {"v": "ot", "extra": nested(5)})
    assert shallow.status_code == 200


async def test_several_operations_without_an_operation_name_are_refused(
    api: Api, upstreams: dict[str, Upstream]
) -> None:
    before = upstream_calls(upstreams)
    refused = await api.query(TWO_OPERATIONS)
    assert refused.status_code == 400
    body = refused.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "operationName" in body["errors"][0]["message"]
    assert upstream_calls(upstreams) == before  # nothing ran
    chosen = await api.client.post(
        f"{api.url}/graphql",
        json={"query": TWO_OPERATIONS, "operationName": "A"},
        headers=api.signer.headers(),
    )
    assert chosen.status_code == 200
    assert chosen.json()["data"]["patients"]["totalCount"] > 0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_a_correctly_signed_token_with_a_deeply_nested_payload_is_a_401(api: Api) -> None:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "nester", "iat": now, "exp": now + 300}
    levels = 2500  # past the JSON parser's recursion limit, under the 8 KB token limit
    payload = json.dumps(claims)[:-1] + ', "deep": ' + "[" * levels + "]" * levels + "}"
    header = json.dumps({"alg": "RS256", "kid": api.signer.kid, "typ": "JWT"})
    unsigned = f"{b64url(header.encode())}.{b64url(payload.encode())}"
    signature = api.signer.key.sign(unsigned.encode(), padding.PKCS1v15(), hashes.SHA256())
    token = f"{unsigned}.{b64url(signature)}"
    assert len(token) < 8192
    response = await api.client.post(
        f"{api.url}/graphql",
        json={"query": "{ me { id } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_content_type_is_the_json_media_type_itself(api: Api) -> None:
    body = b'{"query": "{ me { id } }"}'
    answers = {}
    for content_type in (
        "text/plain; application/json",  # a CSRF-able simple type naming JSON in a parameter
        "application/jsonp",
        "application/json; charset=utf-8",
        "Application/JSON",
    ):
        headers = {**api.signer.headers(), "Content-Type": content_type}
        response = await api.client.post(f"{api.url}/graphql", content=body, headers=headers)
        answers[content_type] = response.status_code
    assert answers == {
        "text/plain; application/json": 415,
        "application/jsonp": 415,
        "application/json; charset=utf-8": 200,
        "Application/JSON": 200,
    }


async def test_refusals_outside_graphql_are_never_cached_and_name_no_server(api: Api) -> None:
    missing = await api.client.get(f"{api.url}/no-such-route")
    too_large = await api.client.post(
        f"{api.url}/graphql",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={**api.signer.headers(), "Content-Type": "application/json"},
    )
    for response, status in ((missing, 404), (too_large, 413)):
        assert response.status_code == status
        assert response.headers["cache-control"] == "no-store"
        assert "server" not in response.headers


BOMBS = {
    "tokens": "{ " + "__typename " * 90_000 + "}",  # just under the 1 MB body limit
    "aliases": "{ patients { nodes { "
    + " ".join(f'o{i}: observations(code: "c{i}") {{ totalCount }}' for i in range(200))
    + " } } }",
    "depth": "{ patients { nodes { "
    + "observations { nodes { " * 10
    + "id"
    + " } }" * 10
    + " } } }",
    "directives": "{ patients { totalCount" + " @include(if: true)" * 5_000 + " } }",
    "root fields": "{ " + " ".join(f"p{i}: patients {{ totalCount }}" for i in range(50)) + " }",
    # Within the alias limit; validation would compare each pair of the 25 `o`s.
    "repeats": "{ patients { nodes { "
    + " ".join(f'o: observations(code: "c{i}") {{ totalCount }}' for i in range(25))
    + " } } }",
}


async def test_document_bombs_are_rejected_before_any_work(
    api: Api, upstreams: dict[str, Upstream]
) -> None:
    before = upstream_calls(upstreams)
    for name, query in BOMBS.items():
        assert len(query.encode()) < 1_000_000, name
        response = await api.query(query)
        assert response.status_code == 400, name
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "QUERY_REJECTED", name
    assert upstream_calls(upstreams) == before
    healthy = await api.client.get(f"{api.url}/healthz")
    assert healthy.status_code == 200


async def test_a_query_over_the_cost_budget_is_refused_with_its_estimate(
    api: Api, upstreams: dict[str, Upstream]
) -> None:
    """25 collections (within the alias limit) on each of 100 patients, from two sources:
    5,002 searches against a budget of 2,000."""
    query = (
        "query($n: Int) { patients(first: $n) { nodes { "
        + " ".join(f"c{i}: conditions(first: 100) {{ totalCount }}" for i in range(25))
        + " } } }"
    )
    before = upstream_calls(upstreams)
    refused = await api.query(query, {"n": 100})
    assert refused.status_code == 400
    (error,) = refused.json()["errors"]
    assert error["extensions"] == {
        "code": "QUERY_REJECTED",
        "cost": {"searches": 2 + 100 * 25 * 2, "records": 100 + 100 * 25 * 100, "patients": 100},
        "budget": {"searches": 2_000, "records": 50_000, "patients": 100},
    }
    assert "5002 upstream searches" in error["message"]
    assert upstream_calls(upstreams) == before
    within = await api.query(query, {"n": 2})  # the same document with a smaller page
    assert within.status_code == 200
    assert len(within.json()["data"]["patients"]["nodes"]) == 2


async def test_every_response_carries_a_request_id(api: Api) -> None:
    given = await api.client.get(f"{api.url}/healthz", headers={"X-Request-Id": "abc-123.4:5"})
    assert given.headers["x-request-id"] == "abc-123.4:5"
    made = [await api.client.get(f"{api.url}/healthz") for _ in range(2)]
    ids = [m.headers["x-request-id"] for m in made]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert ids[0] != ids[1]
    for hostile in ("x" * 65, "a b", "<script>", "a;b"):
        answer = await api.client.get(f"{api.url}/healthz", headers={"X-Request-Id": hostile})
        assert answer.headers["x-request-id"] != hostile
    too_large = await api.client.post(
        f"{api.url}/graphql",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={**api.signer.headers(), "X-Request-Id": "r-413"},
    )
    assert too_large.headers["x-request-id"] == "r-413"
