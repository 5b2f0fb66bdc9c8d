"""Who a survey entrant is: a per-browser id in a signed cookie, and the client address beside it.

One prize-draw ticket per entrant and session: the ticket is derived from (session, entrant id), so a
browser that submits again gets its first ticket back, never a second one. The id is random, issued by
the gateway in an HttpOnly cookie and signed (HMAC-SHA256 with ``GATEWAY_CLIENT_COOKIE_SECRET``), so a
client cannot mint ids without asking a gateway for them; and every new entrant counts against its
client address, at most ``GATEWAY_SURVEY_ENTRIES_PER_ADDRESS`` per session. gateway/README.md says what
a determined cheater can still do.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict

from gateway.errors import ApiError
from gateway.settings import Settings

COOKIE_NAME = "gw_entrant"
COOKIE_MAX_AGE = 30 * 24 * 3600
_COOKIE_VALUE = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{32})")
# Sessions whose per-address counts are kept (the current one, and a few earlier ones still answering).
KEPT_SESSIONS = 4


class EntrantCookies:
    def __init__(self, settings: Settings) -> None:
        secret = settings.client_cookie_secret
        self._key = secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
        self._secure = settings.public_url.startswith("https://")

    def _signature(self, entrant: str) -> str:
        return hmac.new(self._key, entrant.encode(), hashlib.sha256).hexdigest()[:32]

    def entrant(self, cookie: str | None) -> str | None:
        """The entrant id of a cookie this gateway (or a replica with the same secret) signed."""
        match = _COOKIE_VALUE.fullmatch(cookie or "")
        if match is None:
            return None
        entrant, signature = match.groups()
        return entrant if hmac.compare_digest(signature, self._signature(entrant)) else None

    def new_entrant(self, idempotency_key: str | None) -> str:
        """A fresh id; from the Idempotency-Key when one is given, so that a first submission retried
        before its cookie was stored still lands on the same ticket."""
        if idempotency_key is None:
            return secrets.token_hex(16)
        return hmac.new(self._key, b"entrant\n" + idempotency_key.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).hexdigest()[:32]

    def set_cookie_header(self, entrant: str) -> str:
        attributes = [f"{COOKIE_NAME}={entrant}.{self._signature(entrant)}", "Path=/api",
                      f"Max-Age={COOKIE_MAX_AGE}", "HttpOnly", "SameSite=Strict"]
        if self._secure:
            attributes.append("Secure")
        return "; ".join(attributes)


class SurveyEntries:
    """New entrants per client address and session, on this replica."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._counts: OrderedDict[str, dict[str, int]] = OrderedDict()

    def full(self, session_id: str, address: str) -> bool:
        return self._counts.get(session_id, {}).get(address, 0) >= self.per_address

    def refusal(self) -> ApiError:
        return ApiError(429, f"This address has entered the draw {self.per_address} times in this session.",
                        code="entries_exceeded")

    def count(self, session_id: str, address: str) -> None:
        counts = self._counts.setdefault(session_id, {})
        self._counts.move_to_end(session_id)
        counts[address] = counts.get(address, 0) + 1
        while len(self._counts) > KEPT_SESSIONS:
            self._counts.popitem(last=False)
