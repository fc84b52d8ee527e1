"""Is this delivery the API's? The two signing schemes, and what is refused with which status.

Every delivery carries the Standard Webhooks headers ``webhook-id``, ``webhook-timestamp``
(unix seconds) and ``webhook-signature``. The signature is either

- HMAC (a registered, project-level webhook): space-separated ``v1,<base64>`` entries, each an
  HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` under a ``whsec_`` secret; checked with the
  ``standardwebhooks`` package against every secret given (several during a rotation); or
- a JWT (a per-batch webhook from the create's ``webhook_config``): RS256 only, its key found
  by ``kid`` in a JWKS fetched from ``jwks_url`` (cached; an unknown ``kid`` refetches it).
  ``exp`` and ``iat`` are required (60 s leeway); ``iat`` must lie within the five minutes (plus
  leeway) before now and within five minutes of ``webhook-timestamp``, so that a token cannot
  be replayed under fresh ids while its ``exp`` lasts; ``aud`` is checked when an audience is
  given. A token that names its delivery (``jti``) or its body (``body_sha256``) must name
  this one; one that does not vouch for the body has the batch taken from its ``sub``.

Refusals: a missing or bad signature, or a ``webhook-timestamp`` more than five minutes off,
is 401 (the sender could not prove who it is now: Standard Webhooks treats both alike); a key
set that cannot be fetched is 503, so that the sender retries; a body that verifies but is
not a JSON object is 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gembatch.common.errors import BadInput

SECRET_ENV = "GEMBATCH_WEBHOOK_SECRET"
# Google's key set for per-batch webhook tokens, as third-party write-ups give it (the
# Gemini docs page could not be read whole; docs/webhooks.md): --jwks-url overrides it.
DEFAULT_JWKS_URL = "https://generativelanguage.googleapis.com/.well-known/jwks.json"
TOLERANCE_S = 300  # Standard Webhooks' window, which the Gemini docs ask for too
LEEWAY_S = 60  # clock skew allowed on a token's exp and iat (a sender's clock a bit ahead)
MAX_WEBHOOK_ID = 255  # the webhook_events column (PostgreSQL refuses longer values)
HMAC, JWT = "hmac", "jwt"


class Rejected(Exception):
    """A delivery refused: the HTTP status to answer and why (never a secret)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    scheme: str  # hmac or jwt
    webhook_id: str
    sent_at: datetime
    payload: dict[str, Any]
    # The batch a token names (its sub) when the token does not vouch for the body.
    token_batch: str | None = None


def parse_secrets(raw: str | None) -> list[str]:
    """``GEMBATCH_WEBHOOK_SECRET``: one or more ``whsec_`` secrets, space-separated. Each is
    checked here, so a bad one stops the command at once; the message never shows it."""
    found = (raw or "").split()
    for index, secret in enumerate(found, start=1):
        body = secret.removeprefix("whsec_")
        try:
            key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise BadInput(
                f"{SECRET_ENV}: secret {index} of {len(found)} is not a signing secret "
                "(whsec_ followed by base64)"
            )
    return found


def _looks_like_jwt(signature: str) -> bool:
    return signature.count(".") == 2 and "," not in signature and " " not in signature.strip()


class Verifier:
    def __init__(
        self,
        secrets: list[str],
        jwks_url: str | None = DEFAULT_JWKS_URL,
        *,
        audience: str | None = None,
        tolerance_s: float = TOLERANCE_S,
    ) -> None:
        from standardwebhooks.webhooks import Webhook

        self._hmac = [Webhook(secret) for secret in secrets]
        self.jwks_url = jwks_url
        self.audience = audience
        self.tolerance_s = tolerance_s
        self._keys: Any = None  # jwt.PyJWKClient, made on the first token

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        """Check one delivery (``headers`` with lower-case names); raise :class:`Rejected`."""
        webhook_id = headers.get("webhook-id", "").strip()
        stamp = headers.get("webhook-timestamp", "").strip()
        signature = headers.get("webhook-signature", "").strip()
        if not (webhook_id and stamp and signature):
            raise Rejected(401, "missing webhook-id, webhook-timestamp or webhook-signature")
        try:
            sent = float(stamp)
        except ValueError:
            sent = math.nan
        if not math.isfinite(sent):
            raise Rejected(401, "webhook-timestamp is not a number of seconds")
        if abs(now - sent) > self.tolerance_s:
            raise Rejected(
                401, f"webhook-timestamp is {now - sent:+.0f} s off (at most {self.tolerance_s:g})"
            )
        if len(webhook_id) > MAX_WEBHOOK_ID:
            raise Rejected(400, f"webhook-id is over {MAX_WEBHOOK_ID} characters")
        subject: str | None = None
        if _looks_like_jwt(signature):
            subject = self._check_token(signature, webhook_id, body, sent, now)
            scheme = JWT
        else:
            self._check_hmac(headers, body)
            scheme = HMAC
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested past the stack
            raise Rejected(400, "the body is not JSON (or is nested too deeply)") from None
        if not isinstance(payload, dict):
            raise Rejected(400, "the body is not a JSON object")
        when = datetime.fromtimestamp(sent, UTC)
        return Verified(scheme, webhook_id, when, payload, token_batch=subject)

    def _check_hmac(self, headers: Mapping[str, str], body: bytes) -> None:
        if not self._hmac:
            raise Rejected(401, f"an HMAC-signed delivery, and {SECRET_ENV} is not set")
        wanted = {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        for webhook in self._hmac:
            try:
                webhook.verify(body, wanted, json_parse=False)
                return
            except Exception:  # malformed entries and mismatches alike
                continue
        raise Rejected(401, "no webhook-signature entry matches a signing secret")

    def _check_token(
        self, token: str, webhook_id: str, body: bytes, sent: float, now: float
    ) -> str | None:
        """Verify the token; return the batch it names (``sub``) when it does not vouch
        for the body, so that an unbound body cannot name another batch."""
        import jwt

        if not self.jwks_url:
            raise Rejected(401, "a token-signed delivery, and no --jwks-url to check it with")
        if self._keys is None:
            self._keys = jwt.PyJWKClient(self.jwks_url, timeout=10)
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Rejected(503, f"the key set cannot be fetched now: {exc}") from None
        except (jwt.PyJWKClientError, jwt.PyJWTError) as exc:
            raise Rejected(401, f"the token's key is not in the key set: {exc}") from None
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            # The key set answered, but not with a key set (not JSON, not objects).
            raise Rejected(401, f"the key set is not a JWKS ({type(exc).__name__})") from None
        if key.algorithm_name != "RS256":  # an EC or HMAC key: PyJWT would raise TypeError
            raise Rejected(401, "the token's key in the key set is not an RS256 key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Rejected(401, f"the token does not verify: {exc}") from None
        except (ValueError, TypeError) as exc:  # a key PyJWT cannot use for RS256
            raise Rejected(401, f"the token's key cannot check it ({type(exc).__name__})") from None
        issued = claims["iat"]
        if not isinstance(issued, (int, float)) or isinstance(issued, bool):
            raise Rejected(401, "the token's iat is not a number")
        # exp alone would let a token made with a far exp be replayed for as long as it
        # lives, under fresh webhook-ids: the token must be as fresh as the timestamp.
        if now - issued > self.tolerance_s + LEEWAY_S:
            raise Rejected(401, f"the token was issued {now - issued:.0f} s ago")
        if abs(issued - sent) > self.tolerance_s:
            raise Rejected(401, "the token was issued at another time than webhook-timestamp")
        if "jti" in claims and claims["jti"] != webhook_id:
            raise Rejected(401, "the token was issued for another delivery")
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        if "body_sha256" in claims:
            if claims["body_sha256"] != digest:
                raise Rejected(401, "the token was issued for another body")
            return None
        subject = claims.get("sub")
        return subject.strip() if isinstance(subject, str) and subject.strip() else None
