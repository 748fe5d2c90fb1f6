"""Stateless address-validation cookies for the sequenced-UDP handshake.

How this works: the server answers a client's INITIAL with a RETRY that carries
``cookie = time_bucket (8 bytes) + HMAC-SHA256(secret, address, connection id,
time_bucket)[:16]`` and keeps nothing. Only a client that receives the RETRY at
its address can echo the cookie back; the server recomputes the HMAC for the
current and the previous time bucket and creates a connection only when one
matches. The secret lives in the server process and never leaves it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Hashable

COOKIE_SIZE = 24
_BUCKET_SIZE = 8
_MAC_SIZE = 16


def address_bytes(address: Hashable) -> bytes:
    """A byte string naming an opaque address (bytes pass through; others use repr)."""
    if isinstance(address, bytes):
        return address
    return repr(address).encode()


class CookieIssuer:
    """Makes and checks cookies; holds only the secret and the lifetime."""

    __slots__ = ("_secret", "lifetime")

    def __init__(self, secret: bytes | None = None, lifetime: float = 10.0) -> None:
        """Args:
        secret: HMAC key; a fresh random 32-byte key when None.
        lifetime: seconds per time bucket; a cookie is valid for one to two buckets.
        """
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.lifetime = lifetime

    def make(self, address: Hashable, connection_id: int, now: float) -> bytes:
        """Return the cookie for ``address`` and ``connection_id`` at time ``now``."""
        bucket = int(now // self.lifetime)
        return bucket.to_bytes(_BUCKET_SIZE, "big", signed=True) + self._mac(
            address, connection_id, bucket
        )

    def verify(
        self,
        cookie: bytes | memoryview,
        address: Hashable,
        connection_id: int,
        now: float,
    ) -> bool:
        """True when ``cookie`` was made by us for this address and id, recently enough."""
        if len(cookie) != COOKIE_SIZE:
            return False
        bucket = int.from_bytes(cookie[:_BUCKET_SIZE], "big", signed=True)
        current = int(now // self.lifetime)
        if bucket not in (current, current - 1):
            return False
        return hmac.compare_digest(
            bytes(cookie[_BUCKET_SIZE:]), self._mac(address, connection_id, bucket)
        )

    def _mac(self, address: Hashable, connection_id: int, bucket: int) -> bytes:
        message = (
            address_bytes(address)
            + connection_id.to_bytes(8, "big")
            + bucket.to_bytes(8, "big", signed=True)
        )
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_MAC_SIZE]
