"""`patientgraph demo`: the API plus its demo upstreams, all on loopback, in one process.

Everything is fresh per run: a new signing key, a new SQLite patient index in a temporary
folder, synthetic data from the generator. Nothing is written outside that folder except the
optional tokens file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette

from app.auth.signing import issue_token, key_id, public_jwk
from app.demo.contacts import DEMO_CLINICIAN, practitioner_identifier
from app.demo.fhir_server import create_fhir_app
from app.demo.generator import UPSTREAMS, DemoPopulation, generate_population
from app.demo.lab_feed import SENDING_PARTY, lab_messages
from app.demo.pharmacy_data import pharmacy_fills
from app.demo.pharmacy_server import create_pharmacy_app
from app.demo.serving import serving
from app.main import create_app
from app.settings import Settings, settings_from_mapping
from app.sources.hl7v2.mllp import MllpClient

ISSUER = "https://auth.demo.patientgraph.invalid/"
AUDIENCE = "patientgraph"
ROLES = ("patient", "clinician", "care-coordinator", "billing", "auditor", "admin")
ROLE_SCOPES = {
    "patient": "openid fhirUser patient/*.rs",
    "clinician": "openid fhirUser user/*.rs",
    "care-coordinator": (
        "openid fhirUser user/Patient.rs user/Encounter.rs user/CareTeam.rs "
        "user/MedicationRequest.rs"
    ),
    "billing": "openid fhirUser user/Patient.rs user/Coverage.rs",
    "auditor": "openid fhirUser user/AuditEvent.rs",
    "admin": "openid fhirUser user/*.cruds system/*.cruds patientgraph/cache.purge",
}
# The purpose of use each demo token states (v3-ActReason); admin states none.
ROLE_PURPOSES = {
    "patient": ["PATRQT"],
    "clinician": ["TREAT"],
    "care-coordinator": ["TREAT"],
    "billing": ["HPAYMT"],
    "auditor": ["HOPERAT"],
    "admin": [],
}
# Large pages: a dashboard's batched search for 20 patients then needs no follow-up page.
DEMO_PAGE_SIZE = 500
LIMITED_CLINICIAN_SCOPES = "openid fhirUser user/Patient.rs user/Observation.rs"
LAB = "citylab"
PHARMACY = "pharmacy"
INDEX_QUERY = "{ patients(first: 100) { nodes { id identifiers { system value } } } }"


@dataclass(frozen=True)
class DemoHandle:
    graphql_url: str
    tokens: dict[str, str]
    patients: list[str]
    upstreams: DemoUpstreams
    lab: LabDelivery
    limited_clinician_token: str  # scopes for demographics and observations only

    def tokens_file_json(self) -> str:
        return json.dumps(
            {"graphql_url": self.graphql_url, "tokens": self.tokens, "patients": self.patients},
            indent=2,
        )


def demo_settings(
    workdir: Path,
    host: str,
    port: int,
    fhir_urls: Mapping[str, str],
    graphiql_token: str,
    *,
    pharmacy_url: str | None = None,
    lab: bool = False,
) -> Settings:
    """Settings for the demo's API: the FHIR upstreams, plus the lab listener and the pharmacy
    when asked for (benchmarks of the FHIR path leave them out)."""
    fhir = [
        {
            "id": name,
            "kind": "fhir",
            "base_url": url,
            "timeout_seconds": 5,
            "page_size": DEMO_PAGE_SIZE,
        }
        for name, url in fhir_urls.items()
    ]
    others: list[dict[str, object]] = []
    if lab:
        others.append(
            {
                "id": LAB,
                "kind": "hl7v2",
                "listen": "127.0.0.1:0",  # a free port
                "allowed_senders": [SENDING_PARTY],
            }
        )
    if pharmacy_url:
        others.append(
            {"id": PHARMACY, "kind": "ncpdp", "base_url": pharmacy_url, "timeout_seconds": 5}
        )
    return settings_from_mapping(
        {
            "server": {
                "host": host,
                "port": port,
                "graphiql_headers": {"Authorization": f"Bearer {graphiql_token}"},
            },
            "auth": {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "jwks_file": str(workdir / "jwks.json"),
            },
            "store": {"url": f"sqlite:///{workdir / 'patientgraph.db'}"},
            "identity": {"hash_key": secrets.token_hex(32)},
            "sources": [*fhir, *others],
        },
        environ={},
    )


@dataclass(frozen=True)
class DemoUpstreams:
    fhir: dict[str, str]  # name -> FHIR base URL
    pharmacy: str  # NCPDP SCRIPT endpoint


@contextlib.asynccontextmanager
async def demo_upstreams(population: DemoPopulation) -> AsyncIterator[DemoUpstreams]:
    """The demo's own upstreams on loopback: two FHIR servers and a pharmacy."""
    async with contextlib.AsyncExitStack() as stack:
        fhir = {
            name: await stack.enter_async_context(
                serving(create_fhir_app(population.upstreams[name], max_count=DEMO_PAGE_SIZE))
            )
            + "/fhir/R4"
            for name in UPSTREAMS
        }
        pharmacy_app = create_pharmacy_app(pharmacy_fills(population))
        pharmacy = await stack.enter_async_context(serving(pharmacy_app)) + "/script"
        yield DemoUpstreams(fhir, pharmacy)


@dataclass(frozen=True)
class LabDelivery:
    port: int  # PatientGraph's MLLP listener
    sent: int
    accepted: int


async def send_lab_feed(app: Starlette, population: DemoPopulation) -> LabDelivery:
    """The demo lab: deliver every result message over MLLP, as a lab system would."""
    (lab,) = app.state.runtime.registry.lab_sources
    messages = lab_messages(population, source_id=LAB)
    accepted = 0
    async with MllpClient("127.0.0.1", lab.port) as client:
        for message in messages:
            ack = await client.send(message.encode())
            accepted += b"MSA|AA|" in ack
    return LabDelivery(lab.port, len(messages), accepted)


@contextlib.asynccontextmanager
async def running_demo(
    host: str = "127.0.0.1", port: int = 8000, *, patients: int = 24
) -> AsyncIterator[DemoHandle]:
    population = generate_population(patients=patients)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = key_id(key)

    def token(role: str, patient: str | None = None, scope: str | None = None) -> str:
        return issue_token(
            key,
            issuer=ISSUER,
            audience=AUDIENCE,
            subject=f"demo-{role}",
            roles=[role],
            scope=scope or ROLE_SCOPES[role],
            patient=patient,
            ttl_seconds=12 * 3600,
            kid=kid,
            purposes=ROLE_PURPOSES[role],
            # Clinicians sign in as one demo clinician, for policies with care_team_only.
            practitioner=practitioner_identifier(DEMO_CLINICIAN) if role == "clinician" else None,
        )

    with tempfile.TemporaryDirectory(prefix="patientgraph-demo-") as tmp:
        workdir = Path(tmp)
        (workdir / "jwks.json").write_text(json.dumps({"keys": [public_jwk(key, kid)]}))
        async with demo_upstreams(population) as upstreams:
            tokens = {role: token(role) for role in ROLES if role != "patient"}
            settings = demo_settings(
                workdir,
                host,
                port,
                upstreams.fhir,
                tokens["clinician"],
                pharmacy_url=upstreams.pharmacy,
                lab=True,
            )
            app = create_app(settings)
            async with serving(app, host, port) as base:
                lab = await send_lab_feed(app, population)
                graphql_url = f"{base}/graphql"
                patient_ids = await _index_patients(graphql_url, tokens["admin"])
                tokens = {"patient": token("patient", patient_ids[0]), **tokens}
                limited = token("clinician", scope=LIMITED_CLINICIAN_SCOPES)
                yield DemoHandle(graphql_url, tokens, patient_ids, upstreams, lab, limited)


async def _index_patients(graphql_url: str, admin_token: str) -> list[str]:
    """Ask the API for every demo patient once: this links them in the patient index."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            graphql_url,
            json={"query": INDEX_QUERY},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError("demo upstreams did not answer while indexing")
    return [node["id"] for node in body["data"]["patients"]["nodes"]]


def _write_atomically(path: Path, text: str) -> None:
    """Whoever polls for the file (scripts, tests) never reads it half-written."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


async def run_demo(host: str, port: int, tokens_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_demo(host, port) as demo:
        print(f"GraphiQL: {demo.graphql_url}")
        for name, url in demo.upstreams.fhir.items():
            print(f"Demo FHIR upstream {name}: {url}")
        print(f"Demo pharmacy upstream {PHARMACY}: {demo.upstreams.pharmacy} (NCPDP SCRIPT)")
        print(
            f"Demo lab {LAB}: sent {demo.lab.sent} ORU^R01 messages over MLLP to "
            f"127.0.0.1:{demo.lab.port}, {demo.lab.accepted} acknowledged AA"
        )
        print(f"Demo patients: {len(demo.patients)} (the patient token is {demo.patients[0]}'s)")
        print("Tokens (send as 'Authorization: Bearer <token>'):")
        for role, value in demo.tokens.items():
            print(f"  {role}: {value}")
        print(f"Clinician token limited to {LIMITED_CLINICIAN_SCOPES!r}:")
        print(f"  {demo.limited_clinician_token}")
        if tokens_file is not None:
            await asyncio.to_thread(_write_atomically, tokens_file, demo.tokens_file_json())
        print("Press Ctrl+C to stop.", flush=True)
        await stop.wait()
