"""The outbound client against real servers on 127.0.0.1: what it refuses (before any connection),
how it pins, and how it caps time and bytes.

Nothing here may reach beyond loopback: internal and "public" addresses are only ever refused or
checked, names that must connect are mapped to 127.0.0.1 by an injected resolver, and a guard on
`socket.create_connection` fails any test that tries to dial something else.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wharf.core.config import Settings
from wharf.core.outbound import Outbound, OutboundFailed, OutboundRefused

TIMEOUT = 0.5
REFUSAL = "Wharf does not send requests to internal networks."


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Handler(BaseHTTPRequestHandler):
    """Routes by path: /echo, /redirect?to=&status=, /big?n=&length=, /slow, /trickle-*."""

    server: Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.seen.append(Seen(self.command, self.path, headers, body))
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        try:
            if url.path == "/redirect":
                self.send_response(int(query.get("status", "302")))
                self.send_header("Location", query["to"])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/big":
                size = int(query["n"])
                self.send_response(200)
                if query.get("length") == "1":  # else the body ends when the connection does
                    self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.write(b"x" * size)
            elif url.path == "/slow":
                time.sleep(2 * TIMEOUT)
                self.send_response(200)
                self._ok(b"late")
            elif url.path == "/trickle-body":  # every byte well within one read timeout
                self.send_response(200)
                self.send_header("Content-Length", "30")
                self.end_headers()
                self._trickle(b"y" * 30)
            elif url.path == "/trickle-headers":
                self.wfile.write(b"HTTP/1.0 200 OK\r\n")
                self._trickle(b"X-Slow: " + b"z" * 30 + b"\r\n\r\n")
            else:
                self.send_response(200)
                self.send_header("X-Mixed-Case", "yes")
                self.send_header("X-Twice", "one")
                self.send_header("X-Twice", "two")
                self._ok(b"hello from " + headers.get("host", "").encode())
        except OSError:
            pass  # the client gave up, which is what several tests want

    def _ok(self, body: bytes) -> None:
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, data: bytes) -> None:
        for byte in data:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(TIMEOUT / 5)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    """Counts every connection it accepts, not just requests that parse."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.port: int = self.socket.getsockname()[1]
        self.seen: list[Seen] = []
        self.connections = 0
        self.server_names: list[str] = []
        self.tls = tls
        if tls is not None:
            tls.sni_callback = self._sni

    def _sni(self, _sock: ssl.SSLObject, name: str, _ctx: ssl.SSLContext) -> None:
        self.server_names.append(name)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:  # the handshake in the handler's thread, not the accept loop
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # refused handshakes and hang-ups are expected here

    def reset(self) -> None:
        self.seen.clear()
        self.server_names.clear()


def _serving(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def target() -> Iterator[Server]:
    yield from _serving(Server())


@pytest.fixture(scope="module")
def canary() -> Iterator[Server]:
    yield from _serving(Server())


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address the code under test dials; anything but loopback fails the test."""
    dialled: list[str] = []
    real = socket.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        dialled.append(address[0])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"a test tried to connect to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return dialled


@pytest.fixture(autouse=True)
def canary_untouched(canary: Server, target: Server) -> Iterator[None]:
    target.reset()
    yield
    assert canary.connections == 0, "a refused URL reached the canary"


class Resolver:
    """Made-up names for tests, the system resolver (numeric forms, localhost) for the rest."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = {"pinned.test": ["127.0.0.1"], **(names or {})}
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host in self.names:
            return self.names[host]
        if host.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@pytest.fixture
def resolver() -> Resolver:
    return Resolver()


@pytest.fixture
def outbound(target: Server, closed_port: int, resolver: Resolver) -> Iterator[Outbound]:
    allow = {f"127.0.0.1:{target.port}", f"pinned.test:{target.port}", f"127.0.0.1:{closed_port}"}
    client = Outbound(
        allow=frozenset(allow), connect_timeout=TIMEOUT, timeout=TIMEOUT, resolve=resolver
    )
    yield client
    client.close()


# (URL on the canary's port, what the refusal must say)
LOOPBACK = [
    ("http://127.0.0.1:{port}/", "resolves to 127.0.0.1, a loopback address"),
    ("http://2130706433:{port}/", "resolves to 127.0.0.1, a loopback address"),
    ("http://0x7f000001:{port}/", "resolves to 127.0.0.1, a loopback address"),
    ("http://0177.0.0.1:{port}/", "Not a valid URL: Invalid IPv4 address"),
    ("http://127.1:{port}/", "resolves to 127.0.0.1, a loopback address"),
    # The other disguises inet_aton reads: octal with fewer parts, all octal, hex in one part.
    ("http://0177.1:{port}/", "resolves to 127.0.0.1, a loopback address"),
    ("http://017700000001:{port}/", "resolves to 127.0.0.1, a loopback address"),
    ("http://0x7f.0.0.1:{port}/", "resolves to 127.0.0.1, a loopback address"),
    ("http://0x7f.1:{port}/", "resolves to 127.0.0.1, a loopback address"),
    ("http://[::1]:{port}/", "resolves to ::1, a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/", "which carries 127.0.0.1, a loopback address"),
    ("http://[::ffff:7f00:1]:{port}/", "which carries 127.0.0.1, a loopback address"),
    ("http://localhost:{port}/", "resolves to 127.0.0.1, a loopback address"),
    ("http://LocalHost:{port}/", "a loopback address"),
    ("http://0.0.0.0:{port}/", "resolves to 0.0.0.0, the unspecified address"),
    ("http://[::]:{port}/", "resolves to ::, the unspecified address"),
    ("https://127.0.0.1:{port}/", "a loopback address"),
]
# Beyond loopback: these must be refused without so much as a connection attempt.
ELSEWHERE = [
    ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ("http://[fd00:ec2::254]/", "a cloud metadata address"),
    ("http://100.100.100.200/", "a cloud metadata address"),
    ("http://10.0.0.1/", "a private address"),
    ("http://192.168.1.1:8080/", "a private address"),
    ("http://172.16.0.1/", "a private address"),
    ("https://10.1.2.3/", "a private address"),
    ("http://100.64.0.1/", "a shared (carrier-grade NAT) address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://[ff02::1]/", "a multicast address"),
    ("http://240.0.0.1/", "a reserved address"),
    ("http://[fe80::1]/", "a link-local address"),
    ("http://169.254.1.1/", "a link-local address"),
    ("http://[fc00::1]/", "a private address"),
    ("http://[::ffff:10.0.0.1]/", "which carries 10.0.0.1, a private address"),
    ("http://[::ffff:169.254.169.254]/", "which carries 169.254.169.254, a cloud metadata address"),
    ("http://0xa9fea9fe/", "resolves to 169.254.169.254, a cloud metadata address"),
    ("http://0xA9FEA9FE/latest/meta-data/", "resolves to 169.254.169.254, a cloud metadata"),
    ("http://2852039166/", "resolves to 169.254.169.254, a cloud metadata address"),
    # Dotted octal with four parts: httpx2 refuses it before any lookup.
    ("http://0251.0376.0251.0376/", "Not a valid URL: Invalid IPv4 address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "which carries 169.254.169.254, a cloud metadata address"),
    ("http://[2002:c0a8:101::1]/", "which carries 192.168.1.1, a private address"),
    # Public by ipaddress's reckoning, so refused only because they are named.
    ("http://168.63.129.16/machine?comp=goalstate", "a cloud metadata address"),  # Azure
    ("http://2822734096/", "resolves to 168.63.129.16, a cloud metadata address"),
    ("http://[::ffff:168.63.129.16]/", "which carries 168.63.129.16, a cloud metadata address"),
    ("http://[64:ff9b::a83f:8110]/", "which carries 168.63.129.16, a cloud metadata address"),
    ("http://192.0.0.192/opc/v2/instance/", "a cloud metadata address"),  # Oracle Cloud
    ("http://[::ffff:192.0.0.192]/", "which carries 192.0.0.192, a cloud metadata address"),
    ("http://[fec0::1]/", "resolves to fec0::1, a site-local address"),
    ("http://[feff:ffff::1]/", "a site-local address"),
]


@pytest.mark.parametrize(("url", "says"), LOOPBACK + ELSEWHERE)
def test_internal_addresses_are_refused_before_any_connection(
    outbound: Outbound, canary: Server, loopback_only: list[str], url: str, says: str
) -> None:
    url = url.format(port=canary.port)
    with pytest.raises(OutboundRefused) as checked:
        outbound.check(url)
    assert says in checked.value.detail
    assert checked.value.status == 422
    assert checked.value.title == "Address refused"
    if "resolves to" in says:
        assert checked.value.detail.endswith(REFUSAL)
    for method, content in (("GET", None), ("POST", b"{}")):
        with pytest.raises(OutboundRefused) as sent:
            outbound.request(method, url, content=content)
        assert sent.value.detail == checked.value.detail
    assert loopback_only == []
    assert canary.connections == 0


def test_a_refusal_says_why_in_words_a_user_can_act_on(outbound: Outbound) -> None:
    with pytest.raises(OutboundRefused) as refused:
        outbound.check("http://10.0.0.1/some/path?token=abc")
    assert refused.value.detail == (
        "http://10.0.0.1/ resolves to 10.0.0.1, a private address; "
        "Wharf does not send requests to internal networks."
    )


def test_a_host_is_refused_if_any_of_its_addresses_is_internal(target: Server) -> None:
    resolver = Resolver(
        {
            "public.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
            "mixed.test": ["93.184.216.34", "10.0.0.1"],
            "nat64-public.test": ["64:ff9b::5db8:d822"],
            "mapped-public.test": ["::ffff:93.184.216.34"],
            "teredo.test": ["2001:0:4136:e378:8000:63bf:f5ff:fffe"],  # client 10.0.0.1
            "sixtofour.test": ["2002:7f00:1::1"],
            "docs.test": ["192.0.2.10"],
        }
    )
    outbound = Outbound(resolve=resolver)
    for public in ("public.test", "nat64-public.test", "mapped-public.test"):
        outbound.check(f"https://{public}/hook")  # a check sends nothing, so no connection
    for internal, says in (
        ("mixed.test", "resolves to 10.0.0.1, a private address"),
        ("teredo.test", "which carries 10.0.0.1, a private address"),
        ("sixtofour.test", "which carries 127.0.0.1, a loopback address"),
        ("docs.test", "a private address"),
    ):
        with pytest.raises(OutboundRefused, match=re.escape(says)):
            outbound.check(f"https://{internal}/hook")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/file", "ftp: URLs are not accepted"),
        ("file:///etc/passwd", "file: URLs are not accepted"),
        ("gopher://example.com/", "gopher: URLs are not accepted"),
        ("javascript:alert(1)", "javascript: URLs are not accepted"),
        ("example.com/hook", "without a scheme"),
        ("//example.com/hook", "without a scheme"),
        ("http:///hook", "no host"),
        ("https://", "no host"),
        ("http://host.test:0/", "port 0 does not exist"),
        ("http://host.test:65536/", "port 65536 does not exist"),
        ("http://exa mple.test:x/", "Not a valid URL"),
    ],
)
def test_urls_that_are_not_plain_http_are_refused(outbound: Outbound, url: str, says: str) -> None:
    with pytest.raises(OutboundRefused, match=re.escape(says)):
        outbound.check(url)
    with pytest.raises(OutboundRefused, match=re.escape(says)):
        outbound.request("GET", url)


def test_userinfo_is_refused_even_for_an_allowed_host(outbound: Outbound, target: Server) -> None:
    for url in (
        f"http://user:hunter2@127.0.0.1:{target.port}/echo",
        f"http://user@127.0.0.1:{target.port}/echo",
        f"http://127.0.0.1:{target.port}@10.0.0.1/",
    ):
        with pytest.raises(OutboundRefused, match="user name or password") as refused:
            outbound.request("GET", url)
        assert "hunter2" not in refused.value.detail
    assert target.seen == []


def _no_resolver(host: str, port: int) -> list[str]:
    raise OSError("resolver unreachable")


def test_a_host_that_does_not_resolve_is_refused_by_check_and_failed_by_request(
    outbound: Outbound,
) -> None:
    # check() runs as a URL is saved (a 422 its owner sees); a delivery must retry instead.
    said = "https://nowhere.test/: the host nowhere.test does not resolve"
    with pytest.raises(OutboundRefused) as refused:
        outbound.check("https://nowhere.test/hook")
    assert refused.value.detail == f"{said}."
    with pytest.raises(OutboundFailed) as failed:
        outbound.request("POST", "https://nowhere.test/hook", content=b"{}")
    assert failed.value.reason == f"{said} (a DNS failure, which may pass)"
    assert failed.value.__cause__ is None
    for client in (Outbound(resolve=lambda host, port: []), Outbound(resolve=_no_resolver)):
        with pytest.raises(OutboundRefused, match="does not resolve"):
            client.check("https://example.test/hook")
        with pytest.raises(
            OutboundFailed, match=r"does not resolve \(a DNS failure, which may pass\)$"
        ):
            client.request("POST", "https://example.test/hook", content=b"{}")


def test_a_redirect_to_a_host_that_does_not_resolve_fails(
    outbound: Outbound, target: Server
) -> None:
    start = f"http://127.0.0.1:{target.port}/redirect?to=http://nowhere.test/"
    with pytest.raises(OutboundFailed) as failed:
        outbound.request("GET", start, max_redirects=1)
    assert failed.value.reason == (
        f"http://127.0.0.1:{target.port}/ redirected to http://nowhere.test/: "
        "the host nowhere.test does not resolve (a DNS failure, which may pass)"
    )


@pytest.mark.parametrize(
    "host",
    [
        "atxn--",  # "xn--" makes httpx2 decode it as IDNA, and a label may not end in "-"
        "9xn--.example",
        "-xn--a.example",
        "%xn--9",
        "a..b",  # the rest fail getaddrinfo's own IDNA step, before any DNS query
        "a" * 64 + ".example",
    ],
)
def test_a_malformed_host_is_refused(outbound: Outbound, host: str) -> None:
    url = f"http://{host}/"
    with pytest.raises(OutboundRefused, match="is not a valid host name") as checked:
        outbound.check(url)
    with pytest.raises(OutboundRefused) as sent:
        outbound.request("GET", url)
    assert sent.value.detail == checked.value.detail


def _unresolvable(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture(scope="module")
def unresolving() -> Outbound:
    return Outbound(resolve=_unresolvable)  # once: each client loads the system's CAs


# Any text, and strings of the pieces that trip URL parsing and IDNA decoding.
_PIECES = st.sampled_from(["xn--", "\u0301", *"-.a9ß中%[]:@"])
_HOSTS = st.text() | st.lists(_PIECES | st.text(max_size=2), max_size=10).map("".join)


# The loopback guard is function-scoped, but it only records, so sharing it between examples is
# sound. No database: nothing is written beside the tests.
@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example("atxn--")
@given(_HOSTS)
def test_check_raises_nothing_but_refusals(
    unresolving: Outbound, loopback_only: list[str], host: str
) -> None:
    with contextlib.suppress(OutboundRefused):
        unresolving.check(f"http://{host}/")
    assert loopback_only == []


def test_the_allowed_target_answers(outbound: Outbound, target: Server) -> None:
    response = outbound.request(
        "GET",
        f"http://127.0.0.1:{target.port}/echo",
        headers={"X-Custom": "kept", "Host": "evil.example"},
    )
    assert response.status == 200
    assert response.headers["x-mixed-case"] == "yes"
    assert response.headers["x-twice"] == "one, two"
    assert all(name == name.lower() for name in response.headers)
    assert response.body == f"hello from 127.0.0.1:{target.port}".encode()
    [seen] = target.seen
    assert seen.headers["host"] == f"127.0.0.1:{target.port}"  # not the caller's
    assert seen.headers["x-custom"] == "kept"
    assert seen.headers["user-agent"] == "Wharf/0.1"
    assert seen.headers["accept-encoding"] == "identity"


def test_a_post_carries_its_body(outbound: Outbound, target: Server) -> None:
    response = outbound.request(
        "POST",
        f"http://127.0.0.1:{target.port}/echo",
        headers={"content-type": "application/json", "user-agent": "Wharf-Webhooks/1"},
        content=b'{"event": "ping"}',
    )
    assert response.status == 200
    [seen] = target.seen
    assert (seen.method, seen.body) == ("POST", b'{"event": "ping"}')
    assert seen.headers["user-agent"] == "Wharf-Webhooks/1"


def test_the_client_connects_to_the_address_it_resolved(
    outbound: Outbound, target: Server, resolver: Resolver, loopback_only: list[str]
) -> None:
    # pinned.test exists only in the injected resolver: a second lookup could not connect.
    response = outbound.request("GET", f"http://PINNED.test:{target.port}/echo")
    assert response.status == 200
    assert response.body == f"hello from pinned.test:{target.port}".encode()
    assert target.seen[0].headers["host"] == f"pinned.test:{target.port}"
    assert resolver.calls == ["pinned.test"]
    assert loopback_only == ["127.0.0.1"]


def test_allowing_host_and_port_allows_no_other_port(
    outbound: Outbound, target: Server, canary: Server, resolver: Resolver
) -> None:
    outbound.check(f"http://127.0.0.1:{target.port}/")
    for url in (f"http://127.0.0.1:{canary.port}/", f"http://pinned.test:{canary.port}/"):
        with pytest.raises(OutboundRefused, match="a loopback address"):
            outbound.request("GET", url)
    by_host = Outbound(allow=frozenset({"pinned.test"}), resolve=resolver)
    by_host.check(f"http://pinned.test:{target.port}/")
    by_host.check("https://pinned.test/")
    with pytest.raises(OutboundRefused, match="a loopback address"):
        by_host.check(f"http://127.0.0.1:{target.port}/")  # the same address, not the same name


def test_the_settings_build_the_client(target: Server, canary: Server) -> None:
    settings = Settings(
        _env_file=None,
        outbound_allow=f" 127.0.0.1:{target.port} , Intranet.Example",
        outbound_connect_timeout_seconds=1,
        outbound_timeout_seconds=2,
    )
    outbound = Outbound.from_settings(settings)
    assert outbound.request("GET", f"http://127.0.0.1:{target.port}/echo").status == 200
    with pytest.raises(OutboundRefused):
        outbound.check(f"http://127.0.0.1:{canary.port}/")


def test_proxies_in_the_environment_are_ignored(
    outbound: Outbound, target: Server, canary: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{canary.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert outbound.request("GET", f"http://127.0.0.1:{target.port}/echo").status == 200
    assert len(target.seen) == 1


def test_a_redirect_is_returned_when_none_may_be_followed(
    outbound: Outbound, target: Server
) -> None:
    response = outbound.request("GET", f"http://127.0.0.1:{target.port}/redirect?to=/echo")
    assert response.status == 302
    assert response.headers["location"] == "/echo"
    assert len(target.seen) == 1


def test_allowed_redirects_are_followed(outbound: Outbound, target: Server) -> None:
    base = f"http://127.0.0.1:{target.port}"
    response = outbound.request("GET", f"{base}/redirect?to=/echo", max_redirects=2)
    assert (response.status, response.body) == (200, f"hello from 127.0.0.1:{target.port}".encode())
    twice = "/redirect?to=/redirect%3Fto%3D/echo"
    assert outbound.request("GET", base + twice, max_redirects=2).status == 200
    assert outbound.request("GET", base + twice, max_redirects=1).status == 302  # out of hops
    paths = [seen.path for seen in target.seen]
    assert paths[-2:] == ["/redirect?to=/redirect%3Fto%3D/echo", "/redirect?to=/echo"]


def test_redirects_change_the_method_as_browsers_do(outbound: Outbound, target: Server) -> None:
    base = f"http://127.0.0.1:{target.port}"
    outbound.request("POST", f"{base}/redirect?to=/echo", content=b"a", max_redirects=1)
    outbound.request("POST", f"{base}/redirect?to=/echo&status=307", content=b"b", max_redirects=1)
    assert [(seen.method, seen.body) for seen in target.seen] == [
        ("POST", b"a"),
        ("GET", b""),
        ("POST", b"b"),
        ("POST", b"b"),
    ]


def test_credentials_stay_with_their_origin(outbound: Outbound, target: Server) -> None:
    elsewhere = f"http://pinned.test:{target.port}/echo"
    outbound.request(
        "GET",
        f"http://127.0.0.1:{target.port}/redirect?to={elsewhere}",
        headers={"Authorization": "Bearer t", "X-Other": "kept"},
        max_redirects=1,
    )
    first, second = target.seen
    assert first.headers["authorization"] == "Bearer t"
    assert "authorization" not in second.headers
    assert second.headers["x-other"] == "kept"


@pytest.mark.parametrize(
    ("to", "says"),
    [
        ("http://127.0.0.1:{canary}/", "a loopback address"),
        ("http://localhost:{canary}/", "a loopback address"),
        ("http://[::ffff:7f00:1]:{canary}/", "which carries 127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://10.0.0.1/", "a private address"),
        ("file:///etc/passwd", "file: URLs are not accepted"),
        ("http://user:pw@127.0.0.1:{target}/echo", "user name or password"),
    ],
)
def test_a_redirect_to_a_refused_url_is_refused(
    outbound: Outbound, target: Server, canary: Server, to: str, says: str
) -> None:
    location = to.format(canary=canary.port, target=target.port)
    start = f"http://127.0.0.1:{target.port}/redirect?to={location}"
    prefix = f"http://127.0.0.1:{target.port}/ redirected to a refused URL: "
    with pytest.raises(OutboundRefused, match="^" + re.escape(prefix)):
        outbound.request("GET", start, max_redirects=2)
    with pytest.raises(OutboundRefused, match=re.escape(says)):
        outbound.request("GET", start, max_redirects=2)
    assert canary.connections == 0
    assert len(target.seen) == 2  # only the first hop, twice


@pytest.mark.parametrize("length", ["1", "0"], ids=["content-length", "until-close"])
def test_a_response_larger_than_max_bytes_fails(
    outbound: Outbound, target: Server, length: str
) -> None:
    base = f"http://127.0.0.1:{target.port}/big?length={length}"
    assert len(outbound.request("GET", f"{base}&n=1000", max_bytes=1000).body) == 1000
    with pytest.raises(OutboundFailed, match="response larger than 1000 bytes"):
        outbound.request("GET", f"{base}&n=1001", max_bytes=1000)
    with pytest.raises(OutboundFailed, match="response larger than 1048576 bytes"):
        outbound.request("GET", f"{base}&n={2 * 1024 * 1024}")


@pytest.mark.parametrize("length", ["1", "0"], ids=["content-length", "until-close"])
def test_truncate_cuts_a_larger_response_at_max_bytes(
    outbound: Outbound, target: Server, length: str
) -> None:
    base = f"http://127.0.0.1:{target.port}/big?length={length}"
    cut = outbound.request("GET", f"{base}&n=1001", max_bytes=1000, truncate=True)
    assert (cut.status, cut.body) == (200, b"x" * 1000)
    whole = outbound.request("GET", f"{base}&n=999", max_bytes=1000, truncate=True)
    assert whole.body == b"x" * 999
    big = outbound.request("GET", f"{base}&n={4 * 1024 * 1024}", truncate=True)
    assert big.body == b"x" * 1024 * 1024


def test_truncate_stops_reading(outbound: Outbound, target: Server) -> None:
    # /trickle-body's 30 bytes take longer than the deadline: only a client that stops reading
    # once it has max_bytes gets an answer, and well within it.
    start = time.monotonic()
    response = outbound.request(
        "GET", f"http://127.0.0.1:{target.port}/trickle-body", max_bytes=1, truncate=True
    )
    assert (response.status, response.body) == (200, b"y")
    assert time.monotonic() - start < TIMEOUT


@pytest.mark.parametrize("path", ["/slow", "/trickle-body", "/trickle-headers"])
def test_the_deadline_covers_the_whole_request(
    outbound: Outbound, target: Server, path: str
) -> None:
    # /trickle-* send a byte every TIMEOUT / 5: no single read times out, only the total can.
    start = time.monotonic()
    with pytest.raises(OutboundFailed, match=f"no complete response within {TIMEOUT:g} s"):
        outbound.request("GET", f"http://127.0.0.1:{target.port}{path}")
    assert time.monotonic() - start < 2 * TIMEOUT


def test_a_refused_connection_fails(outbound: Outbound, closed_port: int) -> None:
    with pytest.raises(OutboundFailed, match=r"could not connect to 127\.0\.0\.1: ") as failed:
        outbound.request("POST", f"http://127.0.0.1:{closed_port}/hook", content=b"{}")
    assert failed.value.reason == str(failed.value)


def test_failures_never_repeat_request_headers_or_body(outbound: Outbound, target: Server) -> None:
    secret = "s3cret-signature"
    for path, headers in (
        ("/slow", {"Authorization": f"Bearer {secret}"}),
        ("/echo", {"X-Broken": f"{secret}\r\nInjected: 1"}),
    ):
        with pytest.raises(OutboundFailed) as failed:
            outbound.request(
                "POST",
                f"http://127.0.0.1:{target.port}{path}",
                headers=headers,
                content=secret.encode(),
            )
        assert secret not in failed.value.reason
        assert failed.value.__cause__ is None
        assert failed.value.__suppress_context__
    assert all("injected" not in seen.headers for seen in target.seen)


def test_a_closed_client_sends_nothing(target: Server) -> None:
    outbound = Outbound(allow=frozenset({f"127.0.0.1:{target.port}"}))
    outbound.close()
    with pytest.raises(RuntimeError):
        outbound.request("GET", f"http://127.0.0.1:{target.port}/echo")
    assert target.seen == []


# TLS: a certificate for pinned.test only, trusted through SSL_CERT_FILE.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("pinned.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_target(certificate: tuple[Path, Path]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    yield from _serving(Server(tls=context))


def test_https_to_the_pinned_address_still_verifies_the_name(
    tls_target: Server, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    tls_target.reset()
    allow = {f"pinned.test:{tls_target.port}", f"127.0.0.1:{tls_target.port}"}
    outbound = Outbound(allow=frozenset(allow), timeout=TIMEOUT, resolve=Resolver())
    response = outbound.request("GET", f"https://pinned.test:{tls_target.port}/echo")
    assert response.body == f"hello from pinned.test:{tls_target.port}".encode()
    assert tls_target.server_names == ["pinned.test"]
    # The same server by its address: the certificate does not name it, so nothing is sent.
    with pytest.raises(OutboundFailed, match=r"could not connect to 127\.0\.0\.1: .*CERTIFICATE"):
        outbound.request("GET", f"https://127.0.0.1:{tls_target.port}/echo")
    assert len(tls_target.seen) == 1
