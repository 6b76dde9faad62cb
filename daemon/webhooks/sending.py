"""One webhook attempt: sign it (Standard Webhooks), connect to the checked address, POST.

Signing uses the ``standardwebhooks`` reference implementation: ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``,
one signature per live secret (a rotated secret keeps signing during its overlap, so receivers
can switch over). The connection goes to ``Target.address``, the address the SSRF check
accepted, with the host name in the Host header and in TLS (SNI and certificate check): no
second name lookup. No redirect is followed (a 3xx is a failure), and an attempt gives up after
``TIMEOUT_S``.
"""

from __future__ import annotations

import email.utils
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import urllib3
from standardwebhooks.webhooks import Webhook

from .targets import Target

TIMEOUT_S = 15.0
USER_AGENT = "eowatch-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    """What one attempt gave: an HTTP status, or an error before any answer."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None   # the receiver's Retry-After, in seconds
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def label(self) -> str:
        """For metrics: 2xx, 3xx, 4xx, 5xx, or the kind of error."""
        if self.status is not None:
            return f"{self.status // 100}xx"
        return (self.error or "error").split(":", 1)[0]


def signature(secrets: list[str], webhook_id: str, sent_at: datetime, body: str) -> str:
    """The ``webhook-signature`` header: a ``v1,…`` signature per secret, space separated."""
    return " ".join(Webhook(secret).sign(webhook_id, sent_at, body) for secret in secrets)


def headers(secrets: list[str], webhook_id: str, body: str, sent_at: datetime | None = None
            ) -> dict[str, str]:
    sent_at = sent_at or datetime.now(UTC)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature(secrets, webhook_id, sent_at, body),
            "content-type": "application/json", "user-agent": USER_AGENT}


def retry_after(value: str | None, now: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def post(target: Target, header: dict[str, str], body: str,
         timeout_s: float = TIMEOUT_S) -> Outcome:
    """POST ``body`` to the checked address of ``target``."""
    name = f"[{target.host}]" if ":" in target.host else target.host   # an IPv6 literal
    host_header = name if target.port in (80, 443) else f"{name}:{target.port}"
    pool = _pool(target, timeout_s)
    started = time.monotonic()
    try:
        response = pool.urlopen("POST", target.path, body=body.encode(),
                                headers={**header, "host": host_header}, redirect=False,
                                retries=False, preload_content=True, assert_same_host=False)
    except urllib3.exceptions.TimeoutError:
        return Outcome(None, f"timeout: no answer within {timeout_s:.0f} s",
                       seconds=time.monotonic() - started)
    except urllib3.exceptions.HTTPError as exc:
        return Outcome(None, f"connection: {exc.__class__.__name__}: {exc}"[:300],
                       seconds=time.monotonic() - started)
    return Outcome(response.status, None, retry_after(response.headers.get("retry-after"),
                                                      time.time()),
                   seconds=time.monotonic() - started)


_POOLS: dict[tuple[str, str, int, str, float], urllib3.HTTPConnectionPool] = {}
_POOLS_LOCK = threading.Lock()
MAX_POOLS = 256


def _pool(target: Target, timeout_s: float) -> urllib3.HTTPConnectionPool:
    """A kept-alive connection pool to the checked address (keyed by it and the host name, so
    a name that now resolves elsewhere gets a pool of its own)."""
    key = (target.scheme, target.address, target.port, target.host, timeout_s)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            if len(_POOLS) >= MAX_POOLS:
                for old in _POOLS.values():
                    old.close()
                _POOLS.clear()
            timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
            if target.scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    target.address, target.port, timeout=timeout, retries=False, maxsize=8,
                    server_hostname=target.host, assert_hostname=target.host,
                    cert_reqs="CERT_REQUIRED")
            else:
                pool = urllib3.HTTPConnectionPool(target.address, target.port,
                                                  timeout=timeout, retries=False, maxsize=8)
            _POOLS[key] = pool
        return pool
