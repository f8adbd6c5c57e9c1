"""Remembered verifications and decisions: never past a token's `exp` or the configured age,
keyed by digest, and decisions identical to the policy's own."""

from __future__ import annotations

import time

import pytest

from app.auth.decisions import Decisions
from app.auth.policy import PurposeRefused, load_policy
from app.auth.principal import Principal
from app.auth.verified import VerifiedTokens


def principal(expires_in: float, **extra: object) -> Principal:
    return Principal(
        "s",
        frozenset({"clinician"}),
        ("user/*.rs",),
        None,
        None,
        "i",
        expires_at=time.time() + expires_in,
        **extra,  # type: ignore[arg-type]
    )


def test_a_verified_token_is_remembered_until_its_age_or_expiry() -> None:
    tokens = VerifiedTokens(max_age=0.3)
    soon = principal(0.15)
    later = principal(60)
    tokens.remember("token-a", soon)
    tokens.remember("token-b", later)
    assert tokens.get("token-a") is soon
    assert tokens.get("token-b") is later
    assert tokens.get("token-c") is None
    time.sleep(0.2)
    assert tokens.get("token-a") is None  # its own exp came first
    assert tokens.get("token-b") is later
    time.sleep(0.15)
    assert tokens.get("token-b") is None  # max_age: a withdrawn key stops working in time


def test_remembering_can_be_turned_off() -> None:
    tokens = VerifiedTokens(max_age=0)
    tokens.remember("token", principal(60))
    assert tokens.get("token") is None


def test_only_a_digest_of_the_token_is_kept() -> None:
    tokens = VerifiedTokens(max_age=60)
    tokens.remember("secret-token-value", principal(60))
    assert "secret-token-value" not in repr(list(tokens._entries.keys()))


def test_decisions_are_the_policys_and_refusals_are_not_remembered() -> None:
    policy = load_policy()
    decisions = Decisions(policy)
    who = principal(60)
    assert decisions.decide(who) == policy.decide(who)
    assert decisions.decide(who) is decisions.decide(who)
    assert decisions.decide(who, break_glass=True).sensitivity is None
    assert decisions.decide(who).sensitivity is not None
    paying = principal(60, purposes=frozenset({"HPAYMT"}))
    for _ in range(2):
        with pytest.raises(PurposeRefused):
            decisions.decide(paying)
