"""API tokens: scoped, stored hashed, shown once.

A token is ``eow_`` and 32 random bytes (URL-safe base64): enough entropy that a plain SHA-256
is what is stored and looked up (no salt or slow hash is needed for random secrets, as for
GitHub's or Stripe's keys). Scopes nest: ``admin`` can do what ``write`` can, which can do what
``read`` can.
"""

from __future__ import annotations

import hashlib
import secrets

SCOPES = ("read", "write", "admin")
PREFIX = "eow_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def allows(granted: str, needed: str) -> bool:
    """Whether a token of scope ``granted`` may do what needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


def new_secret() -> str:
    """A webhook signing secret in Standard Webhooks form: ``whsec_`` + base64 of 32 bytes."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
