"""Webhook signatures: ``X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

Several ``v1=`` values may be present (a partner rotating secrets signs with both);
the timestamp must be within the tolerance window, against replays.
"""

import hashlib
import hmac
import re
from collections.abc import Iterable

TOLERANCE_SECONDS = 300
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class SignatureError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _parse(header: str) -> tuple[int, list[str]]:
    """The timestamp and the well-formed ``v1`` digests; other schemes are ignored."""
    timestamps, digests = [], []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1" and _HEX_DIGEST.fullmatch(value.lower()):
            digests.append(value.lower())
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit() or not digests:
        raise SignatureError(
            "signature_malformed", "X-Signature must look like t=<unix seconds>,v1=<64 hex digits>."
        )
    return int(timestamps[0]), digests


def verify(header: str | None, body: bytes, secrets: Iterable[str], now: float) -> str:
    """The secret that signed ``body``; ``SignatureError`` when none did."""
    if not header:
        raise SignatureError("signature_missing", "The X-Signature header is missing.")
    timestamp, digests = _parse(header)
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError(
            "signature_expired", f"The signature timestamp is more than {TOLERANCE_SECONDS} s off."
        )
    signed = f"{timestamp}.".encode() + body
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, digest) for digest in digests):
            return secret
    raise SignatureError("signature_invalid", "No signature matches an active secret of this partner.")
