"""The `patientgraph` command: schema, check-config, token, jwks (contract section 2)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.auth.jwks import KeySet
from app.auth.signing import private_pem
from app.auth.tokens import verify_access_token
from schema.build import sdl

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_schema_prints_sdl() -> None:
    result = run("schema")
    assert result.returncode == 0
    assert result.stdout == sdl()


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    ok = run("check-config", str(ROOT / "examples" / "patientgraph.toml"))
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "k"\n'
        '[[sources]]\nid = "x"\nkind = "fhir"\nbase_url = "not a url"\n'
    )
    result = run("check-config", str(bad))
    assert result.returncode == 2
    assert "sources[0].base_url" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_warns_about_a_reachable_server_outside_the_production_profile(
    tmp_path: Path,
) -> None:
    auth = '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "k"\n'
    exposed, profiled = tmp_path / "exposed.toml", tmp_path / "profiled.toml"
    exposed.write_text('[server]\nhost = "0.0.0.0"\n' + auth)
    profiled.write_text('[server]\nhost = "0.0.0.0"\nproduction = true\n' + auth)
    warned, quiet = run("check-config", str(exposed)), run("check-config", str(profiled))
    assert warned.returncode == quiet.returncode == 0
    assert "warning: server.host 0.0.0.0" in warned.stderr
    assert "production = true" in warned.stderr
    assert "warning" not in quiet.stderr


def test_serve_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'eighty'\n")
    result = run("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "server.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_and_jwks_round_trip(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "key.pem"
    pem.write_bytes(private_pem(key))
    jwks = run("jwks", "--key", str(pem))
    assert jwks.returncode == 0
    (tmp_path / "jwks.json").write_text(jwks.stdout)
    token = run(
        "token",
        "--key",
        str(pem),
        "--issuer",
        "https://i/",
        "--audience",
        "pg",
        "--sub",
        "dr-who",
        "--role",
        "clinician",
        "--role",
        "admin",
        "--scope",
        "user/*.rs openid",
        "--patient",
        "pg-1",
        "--name",
        "Dr. Who",
        "--client-id",
        "ward-dashboard",
        "--organization",
        "Northside Clinic",
        "--ttl",
        "60",
    )
    assert token.returncode == 0, token.stderr
    principal = asyncio.run(
        verify_access_token(
            token.stdout.strip(),
            keyset=KeySet(path=tmp_path / "jwks.json"),
            issuer="https://i/",
            audience="pg",
            algorithms=["ES256"],
            leeway_seconds=0,
        )
    )
    assert principal.subject == "dr-who"
    assert principal.roles == {"clinician", "admin"}
    assert principal.scopes == ("user/*.rs", "openid")
    assert principal.patient == "pg-1"
    shown = (principal.name, principal.client_id, principal.organization)
    assert shown == ("Dr. Who", "ward-dashboard", "Northside Clinic")
    assert json.loads(jwks.stdout)["keys"][0]["alg"] == "ES256"


def test_token_with_unusable_key(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    result = run("token", "--key", str(junk), "--issuer", "i", "--audience", "a", "--sub", "s")
    assert result.returncode != 0
    assert "cannot use key" in result.stderr


def test_trusted_documents_prints_the_manifest_the_examples_ship(tmp_path: Path) -> None:
    printed = run("trusted-documents")
    assert printed.returncode == 0, printed.stderr
    shipped = json.loads((ROOT / "examples" / "trusted-documents.json").read_text())
    assert json.loads(printed.stdout) == shipped
    own = tmp_path / "mine.graphql"
    own.write_text("{ me { id } }")
    (key,) = json.loads(run("trusted-documents", str(own)).stdout)
    assert key == "sha256:" + hashlib.sha256(b"{ me { id } }").hexdigest()
    assert run("trusted-documents", str(tmp_path / "missing.graphql")).returncode == 2


def test_check_config_verifies_the_trusted_documents_manifest(tmp_path: Path) -> None:
    config = tmp_path / "pg.toml"
    config.write_text(
        '[graphql]\ntrusted_documents = "enforce"\ntrusted_documents_file = "docs.json"\n'
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "k"\n'
    )
    (tmp_path / "docs.json").write_text(json.dumps({"sha256:" + "0" * 64: "{ me { id } }"}))
    tampered = run("check-config", str(config))
    assert tampered.returncode == 2
    assert "graphql.trusted_documents_file" in tampered.stderr
    assert "not the sha256" in tampered.stderr
    text = "{ me { id } }"
    good = {"sha256:" + hashlib.sha256(text.encode()).hexdigest(): text}
    (tmp_path / "docs.json").write_text(json.dumps(good))  # found relative to the config
    assert run("check-config", str(config)).returncode == 0
    config.write_text(
        '[graphql]\ntrusted_documents = "enforce"\n'
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "k"\n'
    )
    no_file = run("check-config", str(config))
    assert no_file.returncode == 2
    assert "needs a file" in no_file.stderr


@pytest.mark.parametrize(
    ("sections", "wanted"),
    [
        ("", 'needs cache.backend = "redis"'),
        ('[cache]\nbackend = "redis"\n', "needs a postgresql:// store"),
    ],
)
def test_serve_refuses_workers_whose_state_would_not_be_shared(
    tmp_path: Path, sections: str, wanted: str
) -> None:
    config = tmp_path / "patientgraph.toml"
    config.write_text('[auth]\nissuer = "i"\naudience = "a"\njwks_file = "k"\n' + sections)
    result = run("serve", "--config", str(config), "--workers", "2")
    assert result.returncode == 2
    assert wanted in result.stderr
    assert "Traceback" not in result.stderr
