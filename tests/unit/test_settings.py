"""Configuration: the contract's keys, env overrides, and errors that name the key."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from app.cache.factory import source_cache
from app.settings import (
    ConfigError,
    ServerSettings,
    load_settings,
    production_warnings,
    settings_from_mapping,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "patientgraph.toml"
AUTH = {"issuer": "https://i/", "audience": "a", "jwks_file": "k.json"}


def test_example_config_loads() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert [s.id for s in settings.sources] == ["hospital", "clinic", "citylab", "pharmacy"]
    assert settings.auth.jwks_file == (EXAMPLE.parent / "keys" / "jwks.json").resolve()
    assert settings.store.url == "sqlite:///./patientgraph.db"


def test_env_overrides_sections_and_sources() -> None:
    settings = load_settings(
        EXAMPLE,
        environ={
            "PATIENTGRAPH_SERVER__PORT": "9001",
            "PATIENTGRAPH_SERVER__GRAPHIQL": "false",
            "PATIENTGRAPH_AUTH__AUDIENCE": "other",
            "PATIENTGRAPH_SOURCES__HOSPITAL__TIMEOUT_SECONDS": "2.5",
            "UNRELATED": "x",
        },
    )
    assert settings.server.port == 9001
    assert settings.server.graphiql is False
    assert settings.auth.audience == "other"
    assert settings.sources[0].timeout_seconds == 2.5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"auth": AUTH, "server": {"port": 70000}}, "server.port"),
        ({"auth": AUTH, "server": {"prot": 1}}, "server.prot"),
        ({"auth": {**AUTH, "jwks_url": "https://x/j"}}, "auth"),
        ({"auth": {**AUTH, "algorithms": ["HS256"]}}, "auth.algorithms"),
        ({"auth": AUTH, "store": {"url": "mysql://x"}}, "store.url"),
        (
            {"auth": AUTH, "sources": [{"id": "h", "kind": "fhir", "base_url": "ftp://x"}]},
            "sources[0].base_url",
        ),
        ({"auth": AUTH, "sources": [{"id": "h", "kind": "fhir"}]}, "sources[0].base_url"),
        ({"auth": AUTH, "sources": [{"id": "h", "kind": "smoke-signals"}]}, "sources[0]"),
        (
            {
                "auth": AUTH,
                "sources": [
                    {"id": "h", "kind": "fhir", "base_url": "http://a"},
                    {"id": "h", "kind": "fhir", "base_url": "http://b"},
                ],
            },
            "sources",
        ),
        (
            {
                "auth": AUTH,
                "sources": [
                    {"id": "h", "kind": "fhir", "base_url": "https://a", "ca_file": "/absent.pem"}
                ],
            },
            "sources[0].ca_file",
        ),
        (
            {
                "auth": AUTH,
                "sources": [
                    {
                        "id": "h",
                        "kind": "fhir",
                        "base_url": "https://a",
                        "client_cert_file": __file__,
                    }
                ],
            },
            "sources[0]",
        ),
        ({}, "auth"),
        ({"auth": AUTH, "identity": {"link_threshold": 10, "review_threshold": 15}}, "identity"),
        (
            {"auth": AUTH, "identity": {"identifier_normalisers": {"urn:x": "soundex"}}},
            "identity.identifier_normalisers.urn:x",
        ),
    ],
)
def test_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from_mapping(data, environ={})
    assert f"\n  {key}" in str(raised.value), str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_unknown_env_source_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no source with id 'nope'"):
        settings_from_mapping({"auth": AUTH}, environ={"PATIENTGRAPH_SOURCES__NOPE__X": "1"})


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_the_audit_chain_has_its_own_hash_key() -> None:
    identity = {"identity": {"hash_key": "index-key"}}
    derived = settings_from_mapping({"auth": AUTH, **identity}, environ={})
    expected = hmac.new(b"index-key", b"patientgraph audit chain", hashlib.sha256).hexdigest()
    assert derived.audit_hash_key == expected
    assert derived.audit_hash_key not in {"index-key", derived.cache_hash_key}
    own = settings_from_mapping(
        {"auth": AUTH, "audit": {"hash_key": "a-key-of-sixteen+"}, **identity}, environ={}
    )
    assert own.audit_hash_key == "a-key-of-sixteen+"
    with pytest.raises(ConfigError, match=r"audit\.hash_key"):
        settings_from_mapping({"auth": AUTH, "audit": {"hash_key": "short"}}, environ={})


def test_the_source_cache_has_its_own_hash_key() -> None:
    def cache_digest(**sections: dict[str, object]) -> str:
        settings = settings_from_mapping({"auth": AUTH, **sections}, environ={})
        cache = source_cache(settings.cache, settings.cache_hash_key)
        assert cache is not None
        return cache.digest("hospital", "http://ehr.test/fhir/R4/Patient?_id=p-1")

    one = cache_digest(cache={"hash_key": "cache-key-one"})
    assert one != cache_digest(cache={"hash_key": "cache-key-two"})
    same_identity: dict[str, Any] = {"identity": {"hash_key": "index-key"}}
    assert cache_digest(cache={"hash_key": "cache-key-one"}, **same_identity) == one
    # Unset: derived from identity.hash_key, deterministically, and never the key itself.
    derived = settings_from_mapping({"auth": AUTH, **same_identity}, environ={}).cache_hash_key
    expected = hmac.new(b"index-key", b"patientgraph source cache", hashlib.sha256).hexdigest()
    assert derived == expected != "index-key"
    assert cache_digest(**same_identity) == cache_digest(**same_identity)
    assert cache_digest(**same_identity) != cache_digest(identity={"hash_key": "other-key"})
    assert cache_digest(**same_identity) != cache_digest(cache={"hash_key": "index-key"})


def test_the_cache_hash_key_has_an_env_override() -> None:
    env = {"PATIENTGRAPH_CACHE__HASH_KEY": "from-the-environment"}
    settings = load_settings(EXAMPLE, environ=env)
    assert settings.cache_hash_key == "from-the-environment"
    with pytest.raises(ConfigError, match=r"cache\.hash_key"):
        settings_from_mapping({"auth": AUTH, "cache": {"hash_key": ""}}, environ={})


def server(**keys: Any) -> ServerSettings:
    return settings_from_mapping({"auth": AUTH, "server": keys}, environ={}).server


def test_the_production_profile_turns_introspection_and_graphiql_off() -> None:
    assert (server().introspection, server().graphiql) == (True, True)
    production = server(production=True)
    assert (production.introspection, production.graphiql) == (False, False)
    assert server(production=True, introspection=False).introspection is False
    for key in ("introspection", "graphiql"):
        with pytest.raises(ConfigError, match=f"turns {key} off"):
            server(production=True, **{key: True})


def test_the_production_profile_keeps_the_audit_trail_on() -> None:
    off = {"auth": AUTH, "audit": {"enabled": False}}
    assert settings_from_mapping(off, environ={}).audit.enabled is False  # to measure its cost
    with pytest.raises(ConfigError, match=r"audit\.enabled = true"):
        settings_from_mapping({**off, "server": {"production": True}}, environ={})


def test_the_alert_rules_need_a_known_time_zone() -> None:
    with pytest.raises(ConfigError, match="unknown time zone"):
        settings_from_mapping(
            {"auth": AUTH, "audit": {"alerts": {"timezone": "Mars/Olympus"}}}, environ={}
        )


def test_a_server_reachable_from_other_hosts_is_warned_to_use_the_profile() -> None:
    assert production_warnings(server()) == []  # loopback
    assert production_warnings(server(host="127.0.0.2")) == []
    (warning,) = production_warnings(server(host="0.0.0.0"))  # noqa: S104  # the case tested
    assert "introspection and graphiql" in warning
    assert "production = true" in warning
    assert production_warnings(server(host="0.0.0.0", production=True)) == []  # noqa: S104
    quiet = server(host="10.0.0.5", introspection=False, graphiql=False)
    assert production_warnings(quiet) == []


def test_rate_limits_are_checked_when_the_settings_load() -> None:
    settings = settings_from_mapping(
        {"auth": AUTH, "rate_limit": {"by_role": {"admin": "60/minute"}}},
        environ={"PATIENTGRAPH_RATE_LIMIT__ENABLED": "true"},
    )
    assert settings.rate_limit.enabled
    assert settings.rate_limit.by_role == {"admin": "60/minute"}
    for bad in ({"per_principal": "lots"}, {"by_role": {"admin": "fast"}}):
        with pytest.raises(ConfigError, match="rate_limit"):
            settings_from_mapping({"auth": AUTH, "rate_limit": bad}, environ={})
