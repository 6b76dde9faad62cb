"""A webhook receiver on loopback that checks every delivery with the Standard Webhooks
reference verifier (the ``standardwebhooks`` package) and answers what a test tells it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    verified: str | None          # None when a secret verified it, else why not
    status: int                   # what the receiver answered
    path: str = ""


@dataclass
class Receiver:
    """``answer(received) -> (status, headers)`` decides each answer (default 204)."""

    secrets: list[str] = field(default_factory=list)
    answer: Callable[[Received], tuple[int, dict[str, str]]] = lambda r: (204, {})
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def verify(self, body: bytes, headers: dict[str, str]) -> str | None:
        errors = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return None
            except WebhookVerificationError as exc:
                errors.append(str(exc))
        return "; ".join(errors) or "no secret to verify with"

    @property
    def accepted(self) -> dict[str, Any]:
        """Verified deliveries the receiver acknowledged (2xx), by webhook-id: the events."""
        with self.lock:
            found: dict[str, Any] = {}
            for r in self.received:
                if r.verified is None and 200 <= r.status < 300:
                    found.setdefault(r.webhook_id, json.loads(r.body))
            return found

    def acknowledgements(self) -> dict[str, int]:
        """How many times each webhook-id was acknowledged."""
        with self.lock:
            counts: dict[str, int] = {}
            for r in self.received:
                if 200 <= r.status < 300:
                    counts[r.webhook_id] = counts.get(r.webhook_id, 0) + 1
            return counts

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                got = Received(headers.get("webhook-id", ""), headers, body,
                               receiver.verify(body, headers), 0, self.path)
                status, extra = receiver.answer(got)
                got.status = status
                with receiver.lock:
                    receiver.received.append(got)
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
