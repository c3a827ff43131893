"""announce_peer tokens: proof that the announcer asked us from its own address.

A token is SHA-1(secret + packed IP) truncated. The secret rotates every five
minutes and the previous one is still honoured, so a token lives 5-10 minutes
and is useless from any other IP.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable

ROTATE_EVERY = 300.0
TOKEN_LEN = 8
SECRET_LEN = 16


class TokenManager:
    __slots__ = ("_random", "_current", "_previous", "_rotated_at")

    def __init__(
        self, now: float, random_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> None:
        self._random = random_bytes
        self._current = random_bytes(SECRET_LEN)
        self._previous = random_bytes(SECRET_LEN)
        self._rotated_at = now

    def _rotate(self, now: float) -> None:
        elapsed = now - self._rotated_at
        if elapsed < ROTATE_EVERY:
            return
        if elapsed >= 2 * ROTATE_EVERY:
            # Both secrets are too old: nothing issued before may pass.
            self._previous = self._random(SECRET_LEN)
        else:
            self._previous = self._current
        self._current = self._random(SECRET_LEN)
        self._rotated_at = now - (elapsed % ROTATE_EVERY)

    @staticmethod
    def _make(secret: bytes, ip: str) -> bytes:
        try:
            packed = ipaddress.ip_address(ip).packed
        except ValueError:
            packed = ip.encode("utf-8", "replace")
        return hashlib.sha1(secret + packed).digest()[:TOKEN_LEN]

    def token_for(self, ip: str, now: float) -> bytes:
        self._rotate(now)
        return self._make(self._current, ip)

    def check(self, token: bytes, ip: str, now: float) -> bool:
        self._rotate(now)
        return any(
            hmac.compare_digest(token, self._make(s, ip)) for s in (self._current, self._previous)
        )
