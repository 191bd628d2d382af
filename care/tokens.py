"""Care-team bearer tokens: how they are made and hashed. Only the hash is ever stored."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "phq_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # A plain SHA-256 suffices: tokens carry 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)
