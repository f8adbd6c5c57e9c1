"""Typed settings: a TOML file plus `PATIENTGRAPH_<SECTION>__<KEY>` environment overrides.

Settings are passed down from `create_app`, never read from a global. Every error names the
offending key (`sources[1].base_url: ...`) so operators never see a traceback for a typo.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse as parse_limit
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.domain.patients import SSN_SYSTEM

ENV_PREFIX = "PATIENTGRAPH_"
DEFAULT_HASH_KEY = "patientgraph-default-index-key"
SOURCE_CACHE_KEY_LABEL = b"patientgraph source cache"  # derives [cache] hash_key when unset
AUDIT_KEY_LABEL = b"patientgraph audit chain"  # derives [audit] hash_key when unset


class ConfigError(Exception):
    """A configuration problem, worded for an operator (names the key, no traceback)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # The production profile: introspection, field suggestions and GraphiQL off (unexpected
    # errors are always masked as INTERNAL). Setting either back on with it is refused.
    production: bool = False
    graphiql: bool = True
    introspection: bool = True
    max_body_bytes: int = Field(1_000_000, ge=1024)
    # Browser origins allowed to call the API (CORS), exactly as sent: "https://portal.example".
    cors_origins: list[str] = Field(default_factory=list)
    # Compress responses of at least gzip_min_bytes for clients that accept gzip.
    gzip: bool = True
    gzip_min_bytes: int = Field(1024, ge=0)
    # On SIGTERM/SIGINT: stop accepting, let requests in flight finish for at most this
    # long, then cancel them (a hung upstream never holds shutdown longer).
    shutdown_seconds: int = Field(5, ge=0, le=300)
    # Server processes sharing the port (`serve --workers N`). More than one needs every
    # shared state outside the process: cache.backend = "redis" and a PostgreSQL store.
    workers: int = Field(1, ge=1, le=64)
    # Headers prefilled in GraphiQL; only the demo sets this (it holds a demo token).
    graphiql_headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _production_profile(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("production") is not True:
            return data
        turned_on = [key for key in ("introspection", "graphiql") if data.get(key) is True]
        if turned_on:
            raise ValueError(f"production = true turns {' and '.join(turned_on)} off")
        return {**data, "introspection": False, "graphiql": False}


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def production_warnings(server: ServerSettings) -> list[str]:
    """What a server reachable from other hosts should not leave on (`check-config` prints
    these, `serve` logs them): a production-looking config outside the production profile."""
    if server.production or server.host in LOOPBACK_HOSTS or server.host.startswith("127."):
        return []
    left_on = [key for key in ("introspection", "graphiql") if getattr(server, key)]
    if not left_on:
        return []
    on = " and ".join(left_on)
    return [
        f"server.host {server.host} is reachable from other hosts but {on} "
        "is on: set [server] production = true"
    ]


class GraphQLSettings(_Section):
    default_page_size: int = Field(20, ge=1)
    max_page_size: int = Field(100, ge=1)
    # Document limits, checked before validation (`schema.limits`): the README's example
    # operations use at most 300 tokens and 1,500 characters, nest 6 deep and use no aliases.
    max_chars: int = Field(100_000, ge=1_000)
    max_tokens: int = Field(2_000, ge=100)
    max_comments: int = Field(200, ge=0)
    max_depth: int = Field(12, ge=2)
    max_aliases: int = Field(30, ge=0)
    max_root_fields: int = Field(10, ge=1)
    max_directives: int = Field(50, ge=0)
    max_fragments: int = Field(50, ge=0)
    # Of one field name in one selection set: validation compares each pair of them.
    max_field_repeats: int = Field(10, ge=1)
    # Query cost budget (`schema.cost`): upstream searches, records and patients one operation
    # may cause. The dashboard example, 20 patients, estimates 20 patients, 520 records and
    # 2 + 20 x (its collections' sources) searches.
    max_searches: int = Field(2_000, ge=1)
    max_records: int = Field(50_000, ge=1)
    max_patients: int = Field(100, ge=1)
    patients_by_role: dict[str, PositiveInt] = Field(default_factory=dict)  # role -> budget
    # Whole-operation deadline: source calls still running after it are abandoned, and the
    # response carries what arrived plus SOURCE_TIMEOUT (reason "deadline") per such source.
    deadline_seconds: float = Field(10.0, gt=0)
    # Trusted documents (`app.web.trusted_documents`): off, log or enforce an allowlist.
    trusted_documents: Literal["off", "log", "enforce"] = "off"
    trusted_documents_file: Path | None = None  # the manifest, relative to the config

    @model_validator(mode="after")
    def _default_within_max(self) -> GraphQLSettings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        if self.trusted_documents != "off" and self.trusted_documents_file is None:
            raise ValueError(f"trusted_documents = {self.trusted_documents!r} needs a file")
        return self


class AuthSettings(_Section):
    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: int = Field(30, ge=0, le=300)
    # Refuse tokens without `iat` (break-the-glass always needs it) and tokens valid longer
    # than this (counted from `iat`, else from now): a leaked long-lived token is a standing key.
    require_iat: bool = False
    max_token_lifetime_seconds: int = Field(86_400, ge=60, le=31 * 86_400)
    jwks_cache_seconds: int = Field(300, ge=10)
    # How long a verified token is remembered (by digest) instead of re-verified; 0 = never.
    # A key withdrawn from the JWKS is honoured until the JWKS is refetched
    # (jwks_cache_seconds), and tokens it verified for at most this long after that.
    verified_token_seconds: float = Field(60.0, ge=0, le=300)
    jwks_min_refresh_seconds: int = Field(30, ge=1)  # at most one refetch per interval
    jwks_timeout_seconds: float = Field(5.0, gt=0, le=60)
    policy_file: Path | None = None  # access policy (TOML); default: the shipped policy

    @model_validator(mode="after")
    def _one_key_source(self) -> AuthSettings:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("set exactly one of jwks_file or jwks_url")
        return self

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
        bad = [alg for alg in value if alg not in allowed]
        if bad or not value:
            raise ValueError(f"only asymmetric algorithms are accepted: {sorted(allowed)}")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            _require_http_url(value)
        return value


class CacheSettings(_Section):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key: deployments sharing one Redis must use different ones.
    key_prefix: str = Field("patientgraph", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Whole GraphQL responses, per caller's rights. 0 turns the response cache off.
    response_ttl_seconds: float = Field(30.0, ge=0, le=3600)
    # Shorter lifetimes for responses that include a type, e.g. {Observation = 10}: a
    # response lives as long as the shortest TTL among the types it selects.
    response_ttl_by_type: dict[str, float] = Field(default_factory=dict)
    # Upstream responses, shared across callers. 0 turns the source cache off.
    source_ttl_seconds: float = Field(60.0, ge=0, le=86400)
    # Bounds of each in-process cache (the Redis backend is bounded by Redis's maxmemory).
    max_entries: int = Field(10_000, ge=1)
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Key of the HMACs that name source-cache entries and purge tags; unset: derived from
    # identity.hash_key (`Settings.cache_hash_key`). The server and `cache purge` must agree.
    hash_key: str | None = Field(None, min_length=1)

    @field_validator("response_ttl_by_type")
    @classmethod
    def _ttls(cls, value: dict[str, float]) -> dict[str, float]:
        for name, ttl in value.items():
            if not name.isidentifier() or not 0 <= ttl <= 3600:
                raise ValueError(f"{name}: a GraphQL type name and 0 to 3600 seconds")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class StoreSettings(_Section):
    url: str = "sqlite:///./patientgraph.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in {"sqlite", "postgresql"}:
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


class IdentitySettings(_Section):
    """The matching engine (`app.identity`)."""

    link_identifier_systems: tuple[str, ...] = (SSN_SYSTEM,)
    # Identifier values are stored in the patient index only as keyed hashes.
    hash_key: str = DEFAULT_HASH_KEY
    # How each system's values are compared (`app.identity.identifiers.NORMALISERS`): the US
    # SSN system is "ssn" unless set here; any other system is "trimmed".
    identifier_normalisers: dict[str, Literal["ssn", "digits", "trimmed", "casefold"]] = {}
    # Match scores (`app.identity.scoring`): at or above link_threshold a record links
    # automatically; at or above review_threshold it is kept apart and listed as a possible
    # match; below, it is a new person.
    link_threshold: float = Field(20.0, gt=0, le=100)
    review_threshold: float = Field(12.0, gt=0, le=100)

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> IdentitySettings:
        if self.review_threshold > self.link_threshold:
            raise ValueError("identity.review_threshold must not exceed identity.link_threshold")
        return self


class AuditAlertSettings(_Section):
    """The access-pattern alert rules (`app.audit.patterns`)."""

    timezone: str = "UTC"  # of the business hours (IANA name)
    day_starts: int = Field(7, ge=0, le=23)  # business hours: [day_starts, day_ends), Mon-Fri
    day_ends: int = Field(19, ge=1, le=24)
    volume_factor: float = Field(3.0, gt=1)  # unique patients in a day vs. the user's usual day
    volume_floor: int = Field(20, ge=1)  # ... and at least this many
    baseline_days: int = Field(14, ge=1, le=90)
    denials: int = Field(5, ge=2)  # denied requests by one user within an hour

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class AuditSettings(_Section):
    """The audit trail (`app.audit`)."""

    # Key of the HMAC that chains the audit events: without it no one can append or rewrite
    # events that verify. Unset: derived from identity.hash_key (`Settings.audit_hash_key`).
    hash_key: str | None = Field(None, min_length=16)
    # Record every disclosure (fail closed: a request whose events cannot be committed is
    # answered INTERNAL). Off only to measure what auditing costs: never with real patients.
    enabled: bool = True
    # `patientgraph audit prune` removes events older than this (None: keep them all).
    retention_days: int | None = Field(None, ge=1)
    alerts: AuditAlertSettings = AuditAlertSettings()


class OAuthClient(_Section):
    """OAuth 2.0 client credentials for an upstream's bearer tokens (`app.sources.oauth`)."""

    token_url: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str | None = None
    timeout_seconds: float = Field(5.0, gt=0, le=60)

    @field_validator("token_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http_url(value)


class _HttpSourceSettings(_Section):
    """What every HTTP source has: its circuit breaker (`app.sources.breaker`) and how long a
    cached answer may stand in for it while it fails (`app.cache.sources`)."""

    # Failures in a row that open the circuit (0: no breaker), and how long it stays open
    # (requests fail at once) before one probe request is let through.
    breaker_failures: int = Field(5, ge=0)
    breaker_reset_seconds: float = Field(30, gt=0, le=3600)
    # Seconds past its freshness a cached answer is still served, marked stale, while the
    # upstream fails or its circuit is open (0: never); needs the source cache.
    stale_if_error_seconds: float = Field(300, ge=0, le=86400)
    # TLS to the upstream (`app.sources.tls`): a CA bundle (PEM) that replaces the system's
    # trust store for it, and a client certificate and key (PEM) for an upstream that asks.
    ca_file: FilePath | None = None
    client_cert_file: FilePath | None = None
    client_key_file: FilePath | None = None
    # Bearer tokens from this token endpoint for every request to the upstream (same TLS).
    oauth: OAuthClient | None = None

    @model_validator(mode="after")
    def _client_certificate_pair(self) -> Any:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file go together")
        return self


class FhirSourceSettings(_HttpSourceSettings):
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: Literal["fhir"]
    base_url: str
    # Replicas of base_url (same data, same ids): a request the base that answered last
    # cannot answer (unreachable, timed out, 5xx) goes to the next, in turn.
    failover_base_urls: list[str] = Field(default_factory=list, max_length=8)
    timeout_seconds: float = Field(5.0, gt=0, le=120)
    # One search with all its pages (default: twice timeout_seconds): a slow chain of next
    # links fails on its own instead of holding the operation until its deadline.
    search_timeout_seconds: float | None = Field(None, gt=0, le=600)
    page_size: int = Field(200, ge=1, le=1000)
    max_batch_size: int = Field(50, ge=1, le=500)
    max_pages: int = Field(50, ge=1)  # pages of one search; more is SourceTooLarge
    max_records: int = Field(10_000, ge=1)  # resources of one search; more is SourceTooLarge
    max_response_bytes: int = Field(8_388_608, ge=1024)  # one page's body, read as it streams
    bearer_token: str | None = None
    # Requests in flight to this upstream at once (the bulkhead, and the connection pool); a
    # request that finds no slot within timeout_seconds fails with reason bulkhead_full.
    max_in_flight: int = Field(32, ge=1, le=1000)
    # Retries of a read that failed at once for a passing reason (refused or reset
    # connection, 502/503/504 without Retry-After), after a random wait of up to
    # retry_backoff_seconds * 2**attempt; retries are at most retry_budget_percent of requests.
    retries: int = Field(2, ge=0, le=5)
    retry_backoff_seconds: float = Field(0.1, ge=0, le=10)
    retry_budget_percent: float = Field(20, ge=0, le=100)
    # This source's upstream cache lifetime (default: [cache] source_ttl_seconds); the
    # upstream's own Cache-Control can only shorten it.
    cache_seconds: float | None = Field(None, ge=0, le=86400)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http_url(value).rstrip("/")

    @field_validator("failover_base_urls")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        return [_require_http_url(url).rstrip("/") for url in value]

    @model_validator(mode="after")
    def _one_kind_of_token(self) -> Any:
        if self.bearer_token is not None and self.oauth is not None:
            raise ValueError("bearer_token and oauth exclude each other")
        return self


class Hl7v2SourceSettings(_Section):
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: Literal["hl7v2"]
    listen: str = "127.0.0.1:2575"  # MLLP listener for ORU^R01, host:port
    max_message_bytes: int = Field(1_048_576, ge=1024)
    idle_timeout_seconds: float = Field(300, gt=0)
    # A frame that has begun must end within this: a sender trickling bytes is cut off.
    frame_timeout_seconds: float = Field(30, gt=0)
    max_connections: int = Field(32, ge=1)
    max_segments: int = Field(5000, ge=10)  # per message; more is AR, nothing stored
    max_results: int = Field(1000, ge=1)  # OBX results per message (one patient); more is AR
    # Peer networks that may connect at all (CIDR); others are closed before a byte is read.
    allowed_clients: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Sending parties whose messages are stored: "APP^FACILITY" (MSH-3.1 ^ MSH-4.1) or "APP"
    # (any facility). Anyone else gets AR and nothing is stored. Required as soon as
    # allowed_clients admits a peer that is not on this host.
    allowed_senders: list[str] = Field(default_factory=list, validate_default=True)
    # MLLP over TLS (`app.sources.tls.listener_context`): the listener's certificate and key
    # (PEM); with tls_client_ca_file, every sender must present a certificate from that CA.
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None
    tls_client_ca_file: FilePath | None = None

    @model_validator(mode="after")
    def _tls_files(self) -> Any:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @field_validator("allowed_clients")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or CIDR network") from None
        return value

    @field_validator("allowed_senders")
    @classmethod
    def _senders(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for item in value:
            app, _, facility = item.partition("^")
            if not app or "|" in item or "^" in facility:
                raise ValueError(f"{item!r} is not APP or APP^FACILITY")
        clients = info.data.get("allowed_clients", [])
        if not value and any(
            not ipaddress.ip_network(c, strict=False).is_loopback for c in clients
        ):
            raise ValueError(
                "must list the lab's sending parties when allowed_clients admits peers "
                "beyond this host"
            )
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:2575")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class NcpdpSourceSettings(_HttpSourceSettings):
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: Literal["ncpdp"]
    base_url: str
    timeout_seconds: float = Field(5.0, gt=0, le=120)
    max_concurrency: int = Field(8, ge=1, le=64)  # medication-history requests at once
    max_response_bytes: int = Field(5_242_880, ge=1024)
    history_days: int | None = Field(None, ge=1)  # date range asked for; none = all history
    sender_id: str = "PATIENTGRAPH"  # Header/From
    receiver_id: str | None = None  # Header/To (default: the source id)
    cache_seconds: float | None = Field(None, ge=0, le=86400)  # as for FHIR sources

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http_url(value).rstrip("/")


SourceSettings = Annotated[
    FhirSourceSettings | Hl7v2SourceSettings | NcpdpSourceSettings, Field(discriminator="kind")
]


class RateLimitSettings(_Section):
    """Requests per client address and per principal (`limits` notation, e.g. "600/minute"),
    counted where the caches are (in-process, or Redis with `cache.backend = "redis"`)."""

    enabled: bool = False
    per_address: str = "1200/minute"
    per_principal: str = "600/minute"
    by_role: dict[str, str] = Field(default_factory=dict)  # role -> limit, instead of the default
    # Cost weighting: a request spends 1 + (its estimated upstream searches // search_unit)
    # from the principal's limit, so a query that fans out widely counts as several.
    search_unit: int = Field(100, ge=1)

    @field_validator("per_address", "per_principal")
    @classmethod
    def _a_limit(cls, value: str) -> str:
        return _limit(value)

    @field_validator("by_role")
    @classmethod
    def _limits(cls, value: dict[str, str]) -> dict[str, str]:
        return {role: _limit(limit) for role, limit in value.items()}


def _limit(value: str) -> str:
    try:
        parse_limit(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate limit such as '600/minute'") from None
    return value


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    graphql: GraphQLSettings = GraphQLSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    auth: AuthSettings
    cache: CacheSettings = CacheSettings()
    store: StoreSettings = StoreSettings()
    identity: IdentitySettings = IdentitySettings()
    audit: AuditSettings = AuditSettings()
    sources: tuple[SourceSettings, ...] = ()

    @field_validator("sources")
    @classmethod
    def _unique_ids(cls, value: tuple[SourceSettings, ...]) -> tuple[SourceSettings, ...]:
        ids = [s.id for s in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate source id(s): {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _workers_share_state(self) -> Any:
        """Caches, rate-limit counters and purges live in the cache backend, the patient index
        and lab results in the store: per-process copies would disagree between workers."""
        if self.server.workers == 1:
            return self
        if self.cache.backend != "redis":
            raise ValueError('server.workers > 1 needs cache.backend = "redis"')
        if urlsplit(self.store.url).scheme != "postgresql":
            raise ValueError("server.workers > 1 needs a postgresql:// store")
        return self

    @model_validator(mode="after")
    def _audited_in_production(self) -> Any:
        """A production server discloses nothing it does not record."""
        if self.server.production and not self.audit.enabled:
            raise ValueError("server.production = true needs audit.enabled = true")
        return self

    @property
    def cache_hash_key(self) -> str:
        """`[cache] hash_key`, or HMAC-SHA256(identity.hash_key, SOURCE_CACHE_KEY_LABEL) in hex:
        either way the cache never holds the patient index's own key."""
        if self.cache.hash_key is not None:
            return self.cache.hash_key
        key = self.identity.hash_key.encode()
        return hmac.new(key, SOURCE_CACHE_KEY_LABEL, hashlib.sha256).hexdigest()

    @property
    def audit_hash_key(self) -> str:
        """`[audit] hash_key`, or HMAC-SHA256(identity.hash_key, AUDIT_KEY_LABEL) in hex."""
        if self.audit.hash_key is not None:
            return self.audit.hash_key
        key = self.identity.hash_key.encode()
        return hmac.new(key, AUDIT_KEY_LABEL, hashlib.sha256).hexdigest()


def _require_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    return value


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read a TOML config and apply environment overrides; raises ConfigError."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file unreadable: {path}: {exc.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file is not valid TOML: {path}: {exc}") from None
    _resolve_relative_paths(data, path.parent)
    return settings_from_mapping(data, environ)


def settings_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Settings:
    merged = _apply_env(dict(data), os.environ if environ is None else environ)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


RELATIVE_PATHS = (
    ("auth", "jwks_file"),
    ("auth", "policy_file"),
    ("graphql", "trusted_documents_file"),
)


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    """File paths are relative to the config file, as operators expect."""
    for section_name, key in RELATIVE_PATHS:
        section = data.get(section_name)
        if isinstance(section, dict) and isinstance(section.get(key), str):
            section[key] = str((base / section[key]).resolve())


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """`PATIENTGRAPH_AUTH__ISSUER=...` sets [auth].issuer; `..._SOURCES__HOSPITAL__TIMEOUT_SECONDS`
    sets that key of the source whose id is `hospital` (`..._SOURCES__HOSPITAL__OAUTH__SCOPE`
    a key of its `oauth` table). Values are read as TOML literals when
    they parse as one (`true`, `5`, `["a"]`), else as strings."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        value = _env_value(raw)
        if parts[0] == "sources" and len(parts) in (3, 4):
            _set_source_key(data, parts[1], parts[2:], value, name)
        elif len(parts) == 2:
            section = data.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise ConfigError(f"{name}: [{parts[0]}] is not a section")
            section[parts[1]] = value
        else:
            raise ConfigError(f"{name}: expected PATIENTGRAPH_<SECTION>__<KEY>")
    return data


def _set_source_key(
    data: dict[str, Any], source_id: str, keys: list[str], value: Any, name: str
) -> None:
    """`keys`: a key of the source, or a table of it and a key there (`oauth`, `client_secret`)."""
    for source in data.get("sources", []):
        if isinstance(source, dict) and source.get("id") == source_id:
            if len(keys) == 2:
                table = source.setdefault(keys[0], {})
                if not isinstance(table, dict):
                    raise ConfigError(f"{name}: {keys[0]!r} of source {source_id!r} is not a table")
                table[keys[1]] = value
            else:
                source[keys[0]] = value
            return
    raise ConfigError(f"{name}: no source with id {source_id!r}")


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ""
        for part in err["loc"]:
            if isinstance(part, int):
                key += f"[{part}]"
            elif part in {"fhir", "hl7v2", "ncpdp"} and key.endswith("]"):
                continue  # discriminator tag pydantic inserts; not a key users wrote
            else:
                key += f".{part}" if key else str(part)
        lines.append(f"{key or '(top level)'}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
