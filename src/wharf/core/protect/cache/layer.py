"""The response cache's ASGI layer: which requests it may answer, their keys, hits and fills
(see the package docstring for why an entry can never be stale)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.data.generations import GenerationReader
from wharf.core.http.asgi import bearer_digest
from wharf.core.metrics import CACHE
from wharf.core.protect.cache.backends import Backend, Entry, Key
from wharf.core.security import (
    ACCOUNTS,
    PRINCIPAL_STATE,
    Principal,
    PrincipalMemo,
    TokenResolver,
)

log = logging.getLogger("wharf.cache")

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
        engine: Engine,
        resolver: TokenResolver,
        backend: Backend,
        groups: tuple[Group, ...],
        generations: GenerationReader,
        principals: PrincipalMemo,
    ) -> None:
        self.app = app
        self.engine = engine
        self.resolver = resolver
        self.backend = backend
        self.groups = groups
        self.generations = generations
        self.principals = principals

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
        try:
            generations = await self.generations.current()
        except Exception as exc:  # database trouble: let the app path answer it (e.g. 503)
            log.warning("cache bypassed, generations unreadable: %s", type(exc).__name__)
            generations = {}
        principal = self._principal(digest, generations)
        if (
            principal is None
            or "read" not in principal.scopes
            or not all(name in generations for name in group.depends)
        ):
            # Not ours to answer (401, 403) or no generation to key on: the app decides.
            _BYPASS.inc()
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["principal_id"] = principal.user_id
        # On a miss the app needs the same principal: it takes this one rather than look the
        # token up a second time (`security.PRINCIPAL_STATE`).
        state[PRINCIPAL_STATE] = (digest, principal)
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

    def _principal(self, digest: str, generations: Mapping[str, int]) -> Principal | None:
        accounts = generations.get(ACCOUNTS)
        if accounts is None:
            return None
        known = self.principals.get(digest, accounts)
        if known is not None:
            return known
        # Users or tokens changed, the token expired, or first sight: ask the database.
        try:
            with self.engine.connect() as conn:
                principal = self.resolver(conn, digest)
        except Exception as exc:  # as for the generations: the app path answers it (e.g. 503)
            log.warning("cache bypassed, token unreadable: %s", type(exc).__name__)
            return None
        self.principals.put(digest, accounts, principal)
        return principal

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
