"""The one client Wharf sends HTTP requests outside with (webhooks now, image downloads later).

A URL from a user must not become a way into the networks Wharf runs in, so a request (and each
redirect it follows) is sent only after three steps:

* Parse once: `httpx2.URL` parses the URL the request is then built from, so the check and the
  connection cannot disagree about the host. Only http(s), no userinfo.
* Resolve once, judge every address: `getaddrinfo` is also what reads the disguised IPv4 forms
  (2130706433, 0x7f000001, 127.1), so there is no second parser to fool. If any address is not
  public unicast (loopback, private, link-local, IPv6 site-local, shared, reserved, multicast,
  cloud metadata, or IPv6 carrying such an IPv4 address: mapped, NAT64, 6to4, Teredo) the URL is
  refused. Hosts in `allow` skip only this judgement. A host that does not resolve is refused by
  `check` (a URL being saved) but fails `request` with OutboundFailed: DNS trouble passes, and a
  delivery should be retried rather than dropped.
* Pin: the request goes to the first address literally; the Host header and the TLS server name
  stay the original name, so certificates are still verified, and a DNS answer that changes after
  the check (rebinding) is never asked for.

httpx2's engine, `httpcore2`, is used directly: `httpx2.Client` keeps cookies between requests and
reads proxies and .netrc from the environment, and its transport takes no network backend, where
the two guarantees below live. Each connect, TLS handshake, read and write is clamped to what is
left of one deadline for the whole call, redirects included (per-read timeouts alone let a server
trickling bytes hold a worker for hours), and nothing but the checked address is dialled. No
connection is reused: one to an IP verified for one name must never carry another name's request.

The body is read as sent (Accept-Encoding: identity), so `max_bytes` caps the wire and no
compressed bomb expands in memory. Error texts name the URL's origin, never request headers or
bodies (signatures, tokens). Name resolution is bounded only by the system resolver's timeouts.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore2
import httpx2

from wharf.core.config import Settings
from wharf.core.errors import InvalidInput, WharfError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# Metadata and platform endpoints, named because not all of them are in a non-public range:
# AWS/GCP/Azure IMDS, AWS IMDS over IPv6, Alibaba, Azure WireServer (a Microsoft-owned public
# address answering only inside Azure), Oracle Cloud (outside 192.0.0.0/24's is_private).
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# The first that applies names the address in the refusal, so the specific come first.
_KINDS: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("a cloud metadata address", lambda ip: ip in _METADATA),
    ("the unspecified address", lambda ip: ip.is_unspecified),
    ("a loopback address", lambda ip: ip.is_loopback),
    ("a link-local address", lambda ip: ip.is_link_local),
    # fec0::/10, deprecated but still routed on some intranets; ipaddress calls it global.
    ("a site-local address", lambda ip: isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
    ("a multicast address", lambda ip: ip.is_multicast),
    ("a shared (carrier-grade NAT) address", lambda ip: ip in _SHARED),
    ("a reserved address", lambda ip: ip.is_reserved),
    ("a private address", lambda ip: ip.is_private),
    # is_global rather than "not private": documentation and benchmark ranges end up here.
    ("not a public address", lambda ip: not ip.is_global),
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIALS = frozenset({"authorization", "proxy-authorization", "cookie"})
_OURS = frozenset({"host", "content-length", "transfer-encoding"})


class OutboundRefused(WharfError):
    """The URL, or an address its host resolves to, may not be reached; nothing was sent."""

    status, title = 422, "Address refused"


class OutboundFailed(Exception):
    """The request was allowed but brought no complete response (DNS, timeout, TLS, size...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unresolved(Exception):
    """The host has no address (yet): `check` refuses it, `request` fails, to be retried."""


# Said of a name that does not resolve: it may later (DNS trouble passes), so a caller that
# retries (webhook deliveries) does; whether it will is the caller's to say.
_RETRIED = "(a DNS failure, which may pass)"


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes


@dataclass(frozen=True)
class _Target:
    url: httpx2.URL
    address: str  # the one resolved address the request is sent to
    origin: str  # scheme://host[:port]/, what error texts name


def _system_resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _why_internal(ip: IPAddress) -> str | None:
    """What makes `ip` unfit to receive requests from Wharf, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        nat64 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None
        teredo = ip.teredo[1] if ip.teredo else None
        for carried in (ip.ipv4_mapped, nat64, ip.sixtofour, teredo):
            if carried is not None and (why := _why_internal(carried)):
                return f"which carries {carried}, {why}"
        if ip.ipv4_mapped is not None or nat64 is not None:
            return None  # only ever reaches the (public) IPv4 address inside it
    return next((why for why, applies in _KINDS if applies(ip)), None)


def _left(deadline: float, timeout: float | None) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore2.ReadTimeout("deadline passed")
    return left if timeout is None else min(left, timeout)


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(self._deadline, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(self._deadline, timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _left(self._deadline, timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore2.NetworkBackend):
    def __init__(self, address: str, deadline: float) -> None:
        self._address, self._deadline = address, deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        if host != self._address:  # a tripwire: nothing but the checked address is dialled
            raise httpcore2.ConnectError("not the checked address")
        timeout = _left(self._deadline, timeout)
        backend = httpcore2.SyncBackend()
        inner = backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(inner, self._deadline)


class Outbound:
    """Sends requests to public addresses only (see the module docstring). Thread-safe."""

    def __init__(
        self,
        *,
        allow: frozenset[str] = frozenset(),
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
        user_agent: str = "Wharf/0.1",
        resolve: Resolver | None = None,
    ) -> None:
        self._allow = frozenset(entry.lower() for entry in allow)
        self._connect_timeout, self._timeout = connect_timeout, timeout
        self._user_agent = user_agent
        self._resolve = resolve or _system_resolve
        # Honours SSL_CERT_FILE / SSL_CERT_DIR, for intranets with their own CA; no proxies.
        self._ssl_context = httpx2.create_ssl_context()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Outbound:
        return cls(
            allow=settings.outbound_allowed,
            connect_timeout=settings.outbound_connect_timeout_seconds,
            timeout=settings.outbound_timeout_seconds,
        )

    def check(self, url: str) -> None:
        """Refuse (OutboundRefused) what `request` would refuse, without sending anything.

        A host that does not resolve is refused here too, where `request` would fail instead: a
        URL being saved is checked while its owner is there to see a typo.
        """
        try:
            self._target(url)
        except _Unresolved as exc:
            raise OutboundRefused(f"{exc}.") from None

    def check_field(self, url: str, *, loc: list[str | int]) -> None:
        """`check` for a URL a client sent in a request: refused as that field (422 naming
        it), as a field that breaks any other rule is."""
        try:
            self.check(url)
        except OutboundRefused as exc:
            raise InvalidInput(exc.detail, loc=loc) from exc

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        max_bytes: int = 1024 * 1024,
        max_redirects: int = 0,
        truncate: bool = False,
    ) -> OutboundResponse:
        """Send one request; follow up to `max_redirects` redirects, each checked again.

        When the redirects run out, the last 3xx response is returned as it is. A body over
        `max_bytes` fails the request, or with `truncate` is cut there and returned: the rest is
        never read, for callers that only want the status.
        """
        if self._closed:
            raise RuntimeError("this Outbound has been closed")
        deadline = time.monotonic() + self._timeout
        method = method.upper()
        sent = {k.lower(): v for k, v in (headers or {}).items() if k.lower() not in _OURS}
        try:
            target = self._target(url)
        except _Unresolved as exc:
            raise OutboundFailed(f"{exc} {_RETRIED}") from None
        hops = 0
        while True:
            response = self._send(target, method, sent, content, max_bytes, truncate, deadline)
            location = response.headers.get("location")
            if response.status not in _REDIRECTS or location is None or hops >= max_redirects:
                return response
            hops += 1
            try:
                following = self._target(target.url.join(location))
            except (httpx2.InvalidURL, OutboundRefused) as exc:
                why = exc.detail if isinstance(exc, OutboundRefused) else f"Not a valid URL: {exc}."
                detail = f"{target.origin} redirected to a refused URL: {why}"
                raise OutboundRefused(detail) from None
            except _Unresolved as exc:
                raise OutboundFailed(f"{target.origin} redirected to {exc} {_RETRIED}") from None
            if following.origin != target.origin:  # as browsers do: credentials stay with origin
                sent = {k: v for k, v in sent.items() if k not in _CREDENTIALS}
            to_get = response.status == 303 or (response.status in (301, 302) and method == "POST")
            if to_get and method != "HEAD":  # what every browser does; 307 and 308 never change
                method, content = "GET", None
            target = following

    def close(self) -> None:
        """Nothing is kept between requests (see the module docstring); later use is an error."""
        self._closed = True

    def _target(self, url: str | httpx2.URL) -> _Target:
        try:
            parsed = httpx2.URL(url)
        except httpx2.InvalidURL as exc:
            raise OutboundRefused(f"Not a valid URL: {exc}.") from None
        if parsed.scheme not in ("http", "https"):
            scheme = f"{parsed.scheme}: URLs are" if parsed.scheme else "A URL without a scheme is"
            raise OutboundRefused(f"{scheme} not accepted; give an http:// or https:// URL.")
        if parsed.userinfo:  # never echoed: it may hold a password
            raise OutboundRefused(
                "A URL with a user name or password before the host is not accepted; "
                "send credentials in a header instead."
            )
        if not parsed.raw_host:
            raise OutboundRefused(f"The URL has no host; give one, as in {parsed.scheme}://host/.")
        origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}/"
        port = (443 if parsed.scheme == "https" else 80) if parsed.port is None else parsed.port
        if not 0 < port < 65536:
            raise OutboundRefused(f"{origin}: port {port} does not exist.")
        host = parsed.raw_host.decode("ascii")  # IDNs in their xn-- form, what DNS is asked
        invalid = f"{origin}: {host} is not a valid host name; check its spelling."
        try:
            # httpx2 decodes xn-- labels only here, and raises (idna.IDNAError, a UnicodeError)
            # for any that is not valid punycode/IDNA, e.g. one ending in "-".
            display = parsed.host
        except ValueError:
            raise OutboundRefused(invalid) from None
        # "As written in the URL": IPv6 in brackets, and an IDN in either of its spellings.
        written = {f"[{name}]" if ":" in name else name for name in (host, display)}
        allowed = not self._allow.isdisjoint(written | {f"{name}:{port}" for name in written})
        try:
            addresses = [ipaddress.ip_address(found) for found in self._resolve(host, port)]
        except ValueError:  # UnicodeError: getaddrinfo's IDNA step (an empty or 64+ char label)
            raise OutboundRefused(invalid) from None
        except OSError:  # socket.gaierror among them
            addresses = []
        if not addresses:
            raise _Unresolved(f"{origin}: the host {display} does not resolve")
        for address in addresses:
            if not allowed and (why := _why_internal(address)):
                raise OutboundRefused(
                    f"{origin} resolves to {address}, {why}; "
                    "Wharf does not send requests to internal networks."
                )
        return _Target(url=parsed, address=str(addresses[0]), origin=origin)

    def _send(
        self,
        target: _Target,
        method: str,
        headers: dict[str, str],
        content: bytes | None,
        max_bytes: int,
        truncate: bool,
        deadline: float,
    ) -> OutboundResponse:
        url = target.url
        sent = {"user-agent": self._user_agent, "accept-encoding": "identity", **headers}
        sent["host"] = url.netloc.decode("ascii")
        if content is not None or method in ("POST", "PUT", "PATCH"):
            sent["content-length"] = str(len(content or b""))
        timeouts = dict.fromkeys(("read", "write", "pool"), self._timeout)
        extensions: dict[str, Any] = {"timeout": {**timeouts, "connect": self._connect_timeout}}
        if url.scheme == "https":
            extensions["sni_hostname"] = url.raw_host.decode("ascii")
        pinned = httpcore2.URL(
            scheme=url.raw_scheme, host=target.address.encode(), port=url.port, target=url.raw_path
        )
        request = httpcore2.Request(
            method,
            pinned,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in sent.items()],
            content=content or b"",
            extensions=extensions,
        )
        pool = httpcore2.ConnectionPool(
            ssl_context=self._ssl_context,
            max_keepalive_connections=0,
            network_backend=_PinnedBackend(target.address, deadline),
        )
        where = target.origin
        # Reasons are ours or the OS's and TLS's, never h11's: those may quote request headers.
        try:
            with pool:
                response = pool.handle_request(request)
                try:
                    body = bytearray()
                    for chunk in response.iter_stream():
                        body += chunk
                        if len(body) > max_bytes:
                            if not truncate:
                                too_big = f"{where}: response larger than {max_bytes} bytes"
                                raise OutboundFailed(too_big)
                            # Closing the response unread closes its connection: no draining.
                            del body[max_bytes:]
                            break
                finally:
                    response.close()
        except httpcore2.ConnectTimeout:
            reason = f"no connection within {self._connect_timeout:g} s"
        except httpcore2.TimeoutException:
            reason = f"no complete response within {self._timeout:g} s"
        except httpcore2.ConnectError as exc:
            reason = f"could not connect to {target.address}: {exc}"
        except httpcore2.LocalProtocolError:
            reason = "the request is not valid HTTP (check the method and header values)"
        except httpcore2.RemoteProtocolError:
            reason = "the response was not valid HTTP"
        except httpcore2.NetworkError as exc:
            reason = f"the connection failed: {exc}"
        else:
            joined: dict[str, str] = {}
            for name, value in response.headers:
                key, text = name.decode("latin-1").lower(), value.decode("latin-1")
                joined[key] = f"{joined[key]}, {text}" if key in joined else text
            return OutboundResponse(status=response.status, headers=joined, body=bytes(body))
        raise OutboundFailed(f"{where}: {reason}") from None
