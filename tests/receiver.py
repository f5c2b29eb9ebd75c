"""A webhook receiver on 127.0.0.1 for tests: records every request and answers from a
script of statuses. It can start down (its port reserved but nothing listening) and come up
later on the same port, as a real receiver that was restarted."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)

    def verifies(self, secret: str) -> bool:
        try:
            Webhook(secret).verify(self.body, self.headers)
        except Exception:
            return False
        return True


@dataclass
class Receiver:
    port: int
    received: list[Received] = field(default_factory=list)
    # Answers for the next requests, in order; once empty, every request gets `default`.
    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    default: int = 200
    delay: float = 0.0  # seconds to sit on each request before answering (a slow receiver)
    body: bytes = b"ok"  # what each answer carries
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def allow(self) -> str:
        """The WHARF_OUTBOUND_ALLOW entry that lets Wharf reach this receiver."""
        return f"127.0.0.1:{self.port}"

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        for status in statuses:
            self.script.append((status, headers or {}))

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                arrived = time.time()
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.received.append(Received(headers, body, arrived))
                    status, extra = (
                        receiver.script.popleft() if receiver.script else (receiver.default, {})
                    )
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(receiver.body)))
                self.end_headers()
                # The client may stop reading a long answer, as Wharf does.
                with contextlib.suppress(OSError):
                    self.wfile.write(receiver.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ids(self) -> list[str]:
        with self.lock:
            return [r.message_id for r in self.received]
