"""The optional authentication step: HMAC-SHA256 challenge-response.

The server sends a 32-byte random nonce (``Challenge``); the client answers
with ``HMAC-SHA256(token, b"netlab-auth-v1\\0" + nonce)`` (``Authenticate``);
the server compares in constant time and answers ``AuthOk`` or a
connection-level ``AUTH_FAILED`` error. The token never crosses the wire and a
fresh nonce per connection makes a recorded answer useless for the next one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from netlab.proto.codec import NONCE_SIZE
from netlab.proto.messages import Authenticate, Challenge

AUTH_CONTEXT = b"netlab-auth-v1\0"


def new_challenge() -> Challenge:
    """Return a challenge with a fresh random nonce."""
    return Challenge(secrets.token_bytes(NONCE_SIZE))


def answer_challenge(token: bytes, challenge: Challenge) -> Authenticate:
    """Return the client's answer to ``challenge`` for the shared ``token``."""
    return Authenticate(hmac.new(token, AUTH_CONTEXT + challenge.nonce, hashlib.sha256).digest())


def verify_answer(token: bytes, challenge: Challenge, answer: Authenticate) -> bool:
    """True when ``answer`` proves knowledge of ``token`` (constant-time compare)."""
    return hmac.compare_digest(answer_challenge(token, challenge).mac, answer.mac)
