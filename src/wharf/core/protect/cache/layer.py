"""The response cache's ASGI layer: which requests it may answer, their keys, hits and fills
(see the package docstring for why an entry can never be stale)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.http.asgi import bearer_digest
from wharf.core.metrics import CACHE
from wharf.core.protect.cache.backends import Backend, Entry, Key
from wharf.core.protect.principals import GENERATIONS_STATE
from wharf.core.security import PRINCIPAL_STATE, Principal

_HIT, _MISS, _BYPASS = (CACHE.labels(result) for result in ("hit", "miss", "bypass"))
MAX_ENTRY_BYTES = 1024 * 1024
_KEPT_HEADERS = frozenset({b"content-type", b"etag", b"link"})


@dataclass(frozen=True)
class Group:
    """Paths whose representations depend on one generation (and those named in `also`);
    `shared` when every reader with the read scope sees the same thing (so one entry serves
    them all)."""

    name: str
    prefixes: tuple[str, ...]
    shared: bool
    also: tuple[str, ...] = ()
    below: tuple[str, ...] = field(init=False)  # what paths under a prefix start with
    depends: tuple[str, ...] = field(init=False)  # every generation in an entry's key

    def __post_init__(self) -> None:
        object.__setattr__(self, "below", tuple(prefix + "/" for prefix in self.prefixes))
        object.__setattr__(self, "depends", (self.name, *self.also))

    def covers(self, path: str) -> bool:
        return path in self.prefixes or path.startswith(self.below)


class ResponseCache:
    """Pure ASGI layer: inside the rate limiter (hits still count), outside routing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        backend: Backend,
        groups: tuple[Group, ...],
    ) -> None:
        self.app = app
        self.backend = backend
        self.groups = groups

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        group = next((g for g in self.groups if g.covers(path)), None)
        digest = bearer_digest(scope) if group is not None else None
        if group is None or digest is None:
            await self.app(scope, receive, send)
            return
        # `ResolvePrincipal`, in front, read the generations and resolved the token for this
        # request; without either (database trouble, an unknown token) the app decides.
        state = scope.get("state", {})
        generations: Mapping[str, int] = state.get(GENERATIONS_STATE, {})
        seen: tuple[str, Principal | None] | None = state.get(PRINCIPAL_STATE)
        principal = seen[1] if seen is not None and seen[0] == digest else None
        if (
            principal is None
            or "read" not in principal.scopes
            or not all(name in generations for name in group.depends)
        ):
            # Not ours to answer (401, 403) or no generation to key on: the app decides.
            _BYPASS.inc()
            await self.app(scope, receive, send)
            return
        state["principal_id"] = principal.user_id
        host = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"if-none-match":
                if_none_match = value
        # Everything the body depends on: the data's generation, who may see what, and the
        # exact URL (absolute `url` fields and Link headers echo host, path and query order).
        seen_by = "all" if group.shared else f"{principal.user_id}:{int(principal.is_admin)}"
        key: Key = (
            group.name,
            tuple([generations[name] for name in group.depends]),
            seen_by,
            host or b"",
            path,
            scope["query_string"],
        )
        entry = self.backend.lookup(key) or await self.backend.get(key)
        if entry is not None:
            _HIT.inc()
            await _replay(entry, if_none_match, send)
            return
        _MISS.inc()
        await self._fill(scope, receive, send, key)

    async def _fill(self, scope: Scope, receive: Receive, send: Send, key: Key) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if start is None or start["status"] != 200:
            return
        # A representation that depends on more than the data (the clock, say) says so, and
        # is not kept: its generation cannot tell when it goes out of date.
        if any(
            k.lower() == b"cache-control" and b"no-store" in v.lower()
            for k, v in start.get("headers", [])
        ):
            return
        body = b"".join(chunks)
        if len(body) > MAX_ENTRY_BYTES:
            return
        kept = [(k, v) for k, v in start.get("headers", []) if k.lower() in _KEPT_HEADERS]
        await self.backend.set(key, Entry(kept, body))


async def _replay(entry: Entry, if_none_match: bytes | None, send: Send) -> None:
    # Copies of the entry's lists: a layer outside may extend the headers it is given.
    if entry.etag is not None and if_none_match is not None and _matches(if_none_match, entry.etag):
        await send({"type": "http.response.start", "status": 304, "headers": [*entry.not_modified]})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [*entry.start]})
    await send({"type": "http.response.body", "body": entry.body})


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    # Weak comparison (RFC 9110 13.1.2), as core.concurrency.not_modified does for the app.
    if if_none_match.strip() == b"*":
        return True
    wanted = etag.removeprefix(b"W/")
    return any(t.strip().removeprefix(b"W/") == wanted for t in if_none_match.split(b","))
