"""How the emulator signs its webhook deliveries, on the standard library alone.

Two schemes, as the live service uses them (docs/webhooks.md has the sources):

- a registered (static) webhook: Standard Webhooks HMAC-SHA256, ``v1,<base64>`` over
  ``"{webhook-id}.{webhook-timestamp}.{body}"`` with the ``whsec_`` secret's decoded bytes,
  one signature per secret in force (two while a rotated-out secret lives on);
- a per-batch (dynamic) webhook: an RS256 JWT. The RSA key pair is made here in pure
  Python (no third-party package may enter the emulator): Miller-Rabin primes, PKCS#1
  v1.5 signatures over a SHA-256 DigestInfo, and the public half served as a JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any

SECRET_PREFIX = "whsec_"
# DER prefix of DigestInfo{sha256, OCTET STRING(32)} (RFC 8017, section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_E = 65537
# Trial division weeds out most candidates before a modular exponentiation is paid.
_SMALL_PRIMES = [p for p in range(3, 4000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2))]


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def truncated(secret: str) -> str:
    """How get and list show a secret: ``whsec_...3frh`` (as the live service answers)."""
    return f"{SECRET_PREFIX}...{secret[-4:]}"


def hmac_signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _probably_prime(n: int, rounds: int) -> bool:
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    # Five rounds: FIPS 186-5 (table B.1) for the primes of a 2048-bit modulus.
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if candidate % _E != 1 and _probably_prime(candidate, 5):
            return candidate


@dataclass(frozen=True)
class RsaKey:
    n: int
    d: int
    p: int
    q: int
    kid: str

    @classmethod
    def generate(cls, bits: int = 2048) -> RsaKey:
        while True:
            p, q = _prime(bits // 2), _prime(bits // 2)
            n = p * q
            if p != q and n.bit_length() == bits:
                d = pow(_E, -1, (p - 1) * (q - 1))
                return cls(n=n, d=d, p=p, q=q, kid=secrets.token_hex(8))

    def sign(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (what ``RS256`` names), via the CRT."""
        size = (self.n.bit_length() + 7) // 8
        digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        padded = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
        m = int.from_bytes(padded, "big")
        s1 = pow(m, self.d % (self.p - 1), self.p)
        s2 = pow(m, self.d % (self.q - 1), self.q)
        h = (pow(self.q, -1, self.p) * (s1 - s2)) % self.p
        return (s2 + h * self.q).to_bytes(size, "big")

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64url(_int_bytes(self.n)),
            "e": b64url(_int_bytes(_E)),
        }


class JwtSigner:
    """One RSA key per emulator, made on first use (a second or so of pure-Python work
    that only emulators with per-batch webhooks pay)."""

    def __init__(self) -> None:
        self._key: RsaKey | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> RsaKey:
        with self._lock:
            if self._key is None:
                self._key = RsaKey.generate()
            return self._key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.jwk()]}

    def token(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        """A compact RS256 JWT; ``kid`` overrides the header's key id (a forgery test)."""
        key = self.key
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or key.kid}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        return signing_input + "." + b64url(key.sign(signing_input.encode()))
