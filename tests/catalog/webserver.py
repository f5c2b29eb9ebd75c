"""A small web server on 127.0.0.1 for the catalog's tests: serves a table of routes (CSV
files, images, redirects, errors, slow and endless answers), counts every request, and
records how many were in flight at once, overall and per Host header."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds before answering (latency, or a timeout)
    drip: bool = False  # send the body a byte at a time, slowly, forever (a slowloris answer)


@dataclass
class WebServer:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    # By path: requests whose answer has begun (their delay is over).
    answered: Counter[str] = field(default_factory=Counter)
    # A request is in flight from its arrival until its answer begins: a client cannot have
    # the whole answer, and so cannot count the request done, before then. By Host header.
    in_flight: Counter[str] = field(default_factory=Counter)
    peak_by_host: Counter[str] = field(default_factory=Counter)
    peak_in_flight: int = 0
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow(self) -> str:
        """The WHARF_OUTBOUND_ALLOW entry that lets Wharf reach this server."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """The URL of `path`, under another name of this server if `host` says so."""
        return f"http://{host}:{self.port}{path}"

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def image(
        self, path: str, data: bytes, content_type: str = "image/jpeg", delay: float = 0.0
    ) -> str:
        return self.add(path, Route(body=data, content_type=content_type, delay=delay))

    def redirect(self, path: str, to: str, status: int = 302) -> str:
        return self.add(path, Route(status=status, headers=(("Location", to),)))

    def total(self) -> int:
        with self.lock:
            return sum(self.hits.values())

    def arrived(self, path: str, host: str) -> None:
        with self.lock:
            self.hits[path] += 1
            self.in_flight[host] += 1
            self.peak_by_host[host] = max(self.peak_by_host[host], self.in_flight[host])
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight.total())

    def answering(self, path: str, host: str) -> None:
        with self.lock:
            self.in_flight[host] -= 1
            self.answered[path] += 1


def _handler(state: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            host = self.headers.get("Host", "")
            state.arrived(self.path, host)
            try:
                route = state.routes.get(self.path)
                if route is None:
                    route = Route(status=404, body=b"not found", content_type="text/plain")
                if route.delay:
                    time.sleep(route.delay)
            finally:
                state.answering(self.path, host)
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            for name, value in route.headers:
                self.send_header(name, value)
            if route.drip:
                self.send_header("Content-Length", str(10**9))
                self.end_headers()
                try:
                    for _ in range(10**6):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    pass
                return
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            with suppress(OSError):
                self.wfile.write(route.body)

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # socketserver's 5 is too few: an import opens many at once


@contextmanager
def serving(port: int = 0) -> Iterator[WebServer]:
    state = WebServer(port=port)
    server = _Server(("127.0.0.1", port), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    state.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
