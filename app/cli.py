"""The `patientgraph` command (contract section 2)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.audit.trail import Checkpoint
    from app.auth.signing import PrivateKey
    from app.settings import Settings

EXIT_CONFIG = 2
WORKERS_ENV = "PATIENTGRAPH_SERVER__WORKERS"  # `serve --workers`, as an override


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patientgraph", description="PatientGraph GraphQL API")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the API with built-in demo upstreams on loopback")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--tokens-file", type=Path)
    demo.set_defaults(handler=_demo)

    serve = sub.add_parser("serve", help="run the server from a TOML config")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument(
        "--workers", type=int, help="server processes (default: [server] workers, 1)"
    )
    serve.set_defaults(handler=_serve)

    token = sub.add_parser("token", help="print a signed JWT for demos and tests")
    token.add_argument("--key", type=Path, required=True, help="PEM private key (RSA or EC)")
    token.add_argument("--issuer", required=True)
    token.add_argument("--audience", required=True)
    token.add_argument("--sub", required=True)
    token.add_argument("--role", action="append", default=[])
    token.add_argument("--scope")
    token.add_argument("--patient")
    token.add_argument("--ttl", type=int, default=3600)
    token.add_argument(
        "--purpose", action="append", default=[], help="purpose of use code, e.g. TREAT"
    )
    token.add_argument(
        "--practitioner", help="the user's practitioner identifier, system|value (care team)"
    )
    token.add_argument("--name", help="the user's display name (the audit trail, access logs)")
    token.add_argument("--client-id", help="the app the token is issued to (the audit trail)")
    token.add_argument("--organization", help="whom the user acts for (access logs)")
    token.add_argument("--kid", help="key id header (default: thumbprint, as `jwks` prints)")
    token.set_defaults(handler=_token)

    jwks = sub.add_parser("jwks", help="print the public JWKS for a PEM private key")
    jwks.add_argument("--key", type=Path, required=True)
    jwks.add_argument("--kid")
    jwks.set_defaults(handler=_jwks)

    schema = sub.add_parser("schema", help="print the GraphQL SDL")
    schema.set_defaults(handler=_schema)

    cache = sub.add_parser("cache", help="manage the shared caches")
    cache_sub = cache.add_subparsers(required=True, metavar="ACTION")
    purge = cache_sub.add_parser("purge", help="remove everything cached about one patient")
    purge.add_argument("--config", type=Path, required=True)
    purge.add_argument("--patient", required=True, help="a PatientGraph patient id")
    purge.add_argument(
        "--actor", default=os.environ.get("USER", "operator"), help="who runs it, for the audit"
    )
    purge.set_defaults(handler=_cache_purge)

    identity = sub.add_parser("identity", help="review and repair patient links (admin)")
    identity_sub = identity.add_subparsers(required=True, metavar="ACTION")
    actions = {
        "reviews": "list what the matcher kept apart for review, oldest first (JSON lines)",
        "explain": "how each source record of a patient was linked (JSON lines)",
        "operations": "administrators' link, unlink and dismiss operations (JSON lines)",
        "link": "make a source record part of an existing patient",
        "unlink": "make a source record a patient of its own",
        "dismiss": "close an open review without linking (different people)",
    }
    parsers = {}
    for name, text in actions.items():
        action = parsers[name] = identity_sub.add_parser(name, help=text)
        action.add_argument("--config", type=Path, required=True)
        action.set_defaults(handler=_identity, action=name)
    parsers["reviews"].add_argument(
        "--status", default="open", choices=["open", "linked", "dismissed", "all"]
    )
    parsers["reviews"].add_argument("--kind", choices=["conflict", "possible_match"])
    for name in ("reviews", "operations"):
        parsers[name].add_argument("--first", type=int, default=100)
        parsers[name].add_argument("--after", type=int, help="the last id of the previous page")
    parsers["explain"].add_argument("--patient", required=True, help="a PatientGraph id")
    for name in ("link", "unlink"):
        parsers[name].add_argument("--source", required=True, help="the record's source id")
        parsers[name].add_argument("--local", required=True, help="its id in that source")
    parsers["link"].add_argument("--patient", required=True, help="the PatientGraph id to join")
    parsers["dismiss"].add_argument("--review", type=int, required=True)
    for name in ("link", "unlink", "dismiss"):
        parsers[name].add_argument("--reason", required=True, help="kept in the audit trail")
        parsers[name].add_argument(
            "--actor", required=True, help="who runs it, for the audit trail"
        )

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(required=True, metavar="ACTION", dest="audit_action")
    verify = audit_sub.add_parser(
        "verify", help="check the audit trail's hash chain; exit 1 naming the first bad event"
    )
    export = audit_sub.add_parser(
        "export", help="write audit events as FHIR AuditEvent NDJSON (IHE BALP) to stdout"
    )
    prune = audit_sub.add_parser(
        "prune", help="remove events older than [audit] retention_days (or --before)"
    )
    report = audit_sub.add_parser(
        "usage", help="per client app: unique patients disclosed, and how many more than once"
    )
    alerts = audit_sub.add_parser(
        "alerts", help="the access-pattern alerts of the last --days (JSON lines; exit 1 if any)"
    )
    alerts.add_argument("--days", type=int, default=1, help="how far back (default 1)")
    checkpoint = audit_sub.add_parser(
        "checkpoint",
        help="print where the chain ends now, HMAC'd (JSON line): keep these outside the store",
    )
    verify.add_argument(
        "--checkpoints",
        type=Path,
        help="a file of `audit checkpoint` lines: the chain must still pass through each",
    )
    for command in (verify, export, prune, report, alerts, checkpoint):
        command.add_argument("--config", type=Path, required=True)
        command.set_defaults(handler=_audit)
    for command in (export, report):
        command.add_argument("--since", type=_moment, help="ISO 8601 (default: the first event)")
    report.add_argument("--until", type=_moment, help="ISO 8601, exclusive (default: now)")
    prune.add_argument("--before", type=_moment, help="ISO 8601 (default: the retention period)")

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("path", type=Path)
    check.set_defaults(handler=_check_config)

    trusted = sub.add_parser(
        "trusted-documents",
        help="print a trusted-documents manifest of .graphql files (none: the example operations)",
    )
    trusted.add_argument("files", type=Path, nargs="*")
    trusted.set_defaults(handler=_trusted_documents)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from app.demo.runner import run_demo
    from app.logging import configure_logging

    configure_logging()
    try:
        asyncio.run(run_demo(args.host, args.port, args.tokens_file))
    except OSError as exc:
        print(
            f"patientgraph demo: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.logging import configure_logging
    from app.main import CONFIG_ENV, create_app
    from app.workers import serve_workers

    if args.workers is not None:  # an override the worker processes read as well
        os.environ[WORKERS_ENV] = str(args.workers)
    settings = _valid_settings(args.config, "patientgraph serve: ")
    if settings is None:
        return EXIT_CONFIG
    configure_logging()
    server = settings.server
    options: dict[str, Any] = {"log_config": None, "access_log": False, "server_header": False}
    if server.workers > 1:  # each worker process builds its own app from the same file
        os.environ[CONFIG_ENV] = str(args.config.resolve())
        return serve_workers(
            server.workers, server.host, server.port, server.shutdown_seconds, options
        )
    uvicorn.run(
        create_app(settings),
        host=server.host,
        port=server.port,
        timeout_graceful_shutdown=server.shutdown_seconds,
        **options,
    )
    return 0


def _cache_purge(args: argparse.Namespace) -> int:
    from app.bootstrap import purge_patient
    from app.cache.backend import CacheUnavailable
    from app.identity.index import is_patient_id

    settings = _valid_settings(args.config, "patientgraph cache purge: ")
    if settings is None:
        return EXIT_CONFIG
    if not is_patient_id(args.patient):
        print("patientgraph cache purge: --patient is not a PatientGraph id", file=sys.stderr)
        return EXIT_CONFIG
    if settings.cache.backend != "redis":
        print(
            "patientgraph cache purge: the memory cache lives inside each server process; "
            'use the purgePatientCache mutation, or [cache] backend = "redis"',
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        counts = asyncio.run(purge_patient(settings, args.patient, args.actor))
    except CacheUnavailable as exc:
        print(f"patientgraph cache purge: {exc}; nothing may be assumed purged", file=sys.stderr)
        return 1
    print(json.dumps({"responses": counts.responses, "sources": counts.sources}))
    return 0


def _identity(args: argparse.Namespace) -> int:
    from app.audit.events import cli_events
    from app.bootstrap import open_identity
    from app.cache.backend import CacheUnavailable
    from app.identity.review import IdentityError

    prefix = f"patientgraph identity {args.action}: "
    settings = _valid_settings(args.config, prefix)
    if settings is None:
        return EXIT_CONFIG
    if args.action in ("link", "unlink") and settings.cache.backend != "redis":
        print(
            prefix + "the memory cache lives inside each server process and would keep "
            "answering with the old link; use the linkPatientRecord or unlinkPatientRecord "
            'mutation, or [cache] backend = "redis"',
            file=sys.stderr,
        )
        return EXIT_CONFIG

    async def run() -> list[Any]:
        async with open_identity(settings) as (review, purger, trail):
            if args.action == "reviews":
                status = None if args.status == "all" else args.status
                return await review.reviews(status, args.kind, args.first, args.after)
            if args.action == "operations":
                return await review.operations(args.first, args.after)
            if args.action == "explain":
                return (await review.explain([args.patient])).get(args.patient, [])
            if args.action == "dismiss":
                await review.dismiss(args.review, args.actor, args.reason)
                await trail.record(*cli_events(args.actor, "identity dismiss", ()))
                return [{"dismissed": args.review}]
            ref = (args.source, args.local)
            if args.action == "link":
                move = await review.link(ref, args.patient, args.actor, args.reason)
            else:
                move = await review.unlink(ref, args.actor, args.reason)
            moved = (move.from_patient_id, move.to_patient_id)
            await trail.record(*cli_events(args.actor, f"identity {args.action}", moved))
            for patient_id in moved:
                await purger.purge_patient(patient_id)
            return [move]

    try:
        found = asyncio.run(run())
    except IdentityError as exc:
        print(prefix + str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except CacheUnavailable as exc:
        print(
            prefix + f"the record was moved, but {exc}: purge both patients "
            "(patientgraph cache purge) before trusting cached answers",
            file=sys.stderr,
        )
        return 1
    for item in found:
        print(json.dumps(item if isinstance(item, dict) else asdict(item), default=_iso))
    return 0


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _checkpoints(path: Path) -> list[Checkpoint] | None:
    """The checkpoints in `path` (JSON lines; `null` lines, of an empty trail, skipped), or
    None when it cannot be read as such."""
    from app.audit.trail import Checkpoint

    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [Checkpoint.of(data) for data in lines if data is not None]
    except (OSError, UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        return None


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _audit(args: argparse.Namespace) -> int:
    from app.audit.fhir import audit_event
    from app.audit.patterns import alerts as alerts_of
    from app.audit.usage import usage_report
    from app.bootstrap import open_audit

    action = args.audit_action
    prefix = f"patientgraph audit {action}: "
    settings = _valid_settings(args.config, prefix)
    if settings is None:
        return EXIT_CONFIG
    before: datetime | None = getattr(args, "before", None)
    if action == "prune" and before is None:
        if settings.audit.retention_days is None:
            print(prefix + "set [audit] retention_days or give --before", file=sys.stderr)
            return EXIT_CONFIG
        before = datetime.now(UTC) - timedelta(days=settings.audit.retention_days)
    checkpoints = _checkpoints(args.checkpoints) if action == "verify" and args.checkpoints else []
    if checkpoints is None:
        print(prefix + f"{args.checkpoints} is not a file of checkpoints", file=sys.stderr)
        return EXIT_CONFIG

    async def run() -> int:
        async with open_audit(settings) as trail:
            if action == "export":
                async for record in trail.since(args.since):
                    sys.stdout.write(json.dumps(audit_event(record), sort_keys=True) + "\n")
                return 0
            if action == "prune" and before is not None:
                removed = await trail.prune(before)
                print(json.dumps({"removed": removed, "before": before.isoformat()}))
                return 0
            if action == "alerts":
                rules = settings.audit.alerts
                since = datetime.now(UTC) - timedelta(days=args.days)
                back = since - timedelta(days=rules.baseline_days)
                found = alerts_of([r async for r in trail.since(back)], since, rules)
                for alert in found:
                    print(json.dumps(asdict(alert), default=_iso))
                return 1 if found else 0
            if action == "usage":
                rows = await usage_report(trail.since(args.since), args.until)
                print(json.dumps([asdict(row) for row in rows]))
                return 0
            if action == "checkpoint":
                taken = await trail.checkpoint()
                print(json.dumps(taken.as_json() if taken is not None else None))
                return 0
            result = await trail.verify(checkpoints)
            report: dict[str, object] = {"events": result.events, "ok": result.ok}
            if not result.ok:
                report |= {"firstBad": result.first_bad, "problem": result.problem}
            print(json.dumps(report))
            return 0 if result.ok else 1

    return asyncio.run(run())


def _load_key(path: Path) -> PrivateKey:
    from app.auth.signing import load_private_key

    try:
        return load_private_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SystemExit(f"patientgraph: cannot use key {path}: {exc.__class__.__name__}") from None


def _token(args: argparse.Namespace) -> int:
    from app.auth.signing import issue_token, key_id

    key = _load_key(args.key)
    print(
        issue_token(
            key,
            issuer=args.issuer,
            audience=args.audience,
            subject=args.sub,
            roles=args.role,
            scope=args.scope,
            patient=args.patient,
            ttl_seconds=args.ttl,
            kid=args.kid or key_id(key),
            purposes=args.purpose,
            practitioner=args.practitioner,
            name=args.name,
            client_id=args.client_id,
            organization=args.organization,
        )
    )
    return 0


def _jwks(args: argparse.Namespace) -> int:
    from app.auth.signing import key_id, public_jwk

    key = _load_key(args.key)
    print(json.dumps({"keys": [public_jwk(key, args.kid or key_id(key))]}, indent=2))
    return 0


def _schema(_args: argparse.Namespace) -> int:
    from schema.build import sdl

    sys.stdout.write(sdl())
    return 0


def _trusted_documents(args: argparse.Namespace) -> int:
    from app.web.examples import DASHBOARD_QUERY, PORTAL_QUERY
    from app.web.trusted_documents import manifest

    try:
        texts = [f.read_text(encoding="utf-8") for f in args.files]
    except OSError as exc:
        print(f"patientgraph trusted-documents: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(manifest(texts or [DASHBOARD_QUERY, PORTAL_QUERY]), indent=2))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = _valid_settings(args.path, f"{args.path}: ")
    if settings is None:
        return EXIT_CONFIG
    from app.settings import production_warnings

    for warning in production_warnings(settings.server):
        print(f"{args.path}: warning: {warning}", file=sys.stderr)
    print(f"{args.path}: ok ({len(settings.sources)} sources)")
    return 0


def _valid_settings(path: Path, prefix: str) -> Settings | None:
    """The settings, with the access policy they name loaded once to prove it is usable; or
    None after printing what is wrong (never a traceback)."""
    from app.auth.policy import PolicyError
    from app.settings import ConfigError, load_settings
    from app.web.trusted_documents import ManifestError, load_manifest
    from schema.build import load_checked_policy

    try:
        settings = load_settings(path)
        load_checked_policy(settings.auth.policy_file)
        if settings.graphql.trusted_documents_file is not None:
            load_manifest(settings.graphql.trusted_documents_file)
    except ConfigError as exc:
        print(f"{prefix}{exc}", file=sys.stderr)
        return None
    except PolicyError as exc:
        print(f"{prefix}auth.policy_file: {exc}", file=sys.stderr)
        return None
    except ManifestError as exc:
        print(f"{prefix}graphql.trusted_documents_file: {exc}", file=sys.stderr)
        return None
    return settings


if __name__ == "__main__":
    raise SystemExit(main())
