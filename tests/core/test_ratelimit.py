"""Rate limits (core.ratelimit): the RateLimit fields, 429s, per-token and login keys, Redis."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, cast

import pytest
from httpx2 import Response
from prometheus_client import REGISTRY
from pydantic import ValidationError
from starlette.testclient import TestClient

from tests.conftest import REQUIRE_SERVICES, UserFactory, auth
from tests.core.test_contract import assert_problem
from wharf.app import create_app
from wharf.core.config import Settings
from wharf.core.protect.ratelimit import (
    MemoryStore,
    Policy,
    RateLimit,
    parse_policies,
    stores,
    verdict,
)
from wharf.core.security import new_token, token_hash

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

COMPANIES = "/api/v1/companies"
LOGIN = "/api/v1/auth/token"
PASSWORD = "correct horse battery"  # what make_user gives every user
DOWN_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

Client = Callable[..., TestClient]


def fields(response: Response) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """RateLimit-Policy and RateLimit parsed as {policy name: {parameter: value}}."""

    def parse(value: str | None) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for member in filter(None, (m.strip() for m in (value or "").split(","))):
            match = re.fullmatch(r'"([a-z0-9-]+)"((?:;[a-z]+=\d+)+)', member)
            assert match, f"not a structured-field member: {member!r}"
            params = (p.split("=") for p in match.group(2).lstrip(";").split(";"))
            out[match.group(1)] = {k: int(v) for k, v in params}
        return out

    return parse(response.headers.get("ratelimit-policy")), parse(response.headers.get("ratelimit"))


def remaining(response: Response, policy: str = "api") -> int:
    return fields(response)[1][policy]["r"]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def assert_429(response: Response, policy: str) -> int:
    assert_problem(response, 429)
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    assert response.headers["x-request-id"]
    assert fields(response)[1][policy]["r"] == 0
    assert policy in response.json()["detail"]
    return retry_after


@pytest.fixture
def limited(settings: Settings) -> Iterator[Client]:
    """Start an app on the test's database with the given settings; `address` picks the
    client's IP address."""
    with ExitStack() as stack:

        def make(*, address: str = "192.0.2.1", app: Any = None, **overrides: Any) -> TestClient:
            if app is None:
                app = create_app(settings.model_copy(update=overrides))
            client = TestClient(app, raise_server_exceptions=False, client=(address, 40000))
            return stack.enter_context(client)

        yield make


def login(client: TestClient, username: str, password: str = "wrong") -> Response:
    return client.post(LOGIN, data={"username": username, "password": password})


# The arithmetic


def test_verdict_allows_until_the_limit_and_counts_down() -> None:
    assert verdict(10, 60, 0, 0.0, 0, 42.3) == (True, 9, 43)
    assert verdict(10, 60, 0, 0.0, 9, 42.3) == (True, 0, 43)


def test_verdict_weights_the_previous_window_by_its_overlap() -> None:
    # 10 in the last window, half of it still overlaps: 5 used, 2 in this one.
    assert verdict(10, 60, 10, 30.0, 2, 30.0) == (True, 2, 30)
    # 10 last window with 45 s of overlap (7.5) and 3 now: 10.5, full. One more fits once the
    # last window weighs 10 - 1 - 3 = 6, at 36 s of overlap: 9 s from now.
    assert verdict(10, 60, 10, 45.0, 3, 45.0) == (False, 0, 9)
    # No rounding down: right after a boundary, a full last window still fills the quota.
    assert verdict(5, 60, 5, 59.9, 0, 59.9)[0] is False


def test_verdict_waits_for_the_window_to_roll_when_it_alone_is_full() -> None:
    # 10 of 10 in this window, 20 s left; then 10 * (60 - s) / 60 must fall to 9: s = 6.
    assert verdict(10, 60, 0, 0.0, 10, 20.0) == (False, 0, 26)
    # 20 in this window (the limit was lowered since): 20 * (60 - s) / 60 <= 9 at s = 33.
    assert verdict(10, 60, 0, 0.0, 20, 20.0) == (False, 0, 53)
    # Never 0 seconds, even when the slot frees at once.
    assert verdict(10, 60, 10, 54.1, 0, 54.1) == (False, 0, 1)


def test_memory_store_counts_per_key_and_slides() -> None:
    clock = [6000.0]  # the start of a 60 s window
    store = MemoryStore(clock=lambda: clock[0])
    policy = Policy("api", parse_policies("x", "3/minute")[0].item)
    assert [store.hit(policy, "a")[:2] for _ in range(4)] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    assert store.hit(policy, "b")[:2] == (True, 2)  # another key is unaffected
    clock[0] += 60  # next window: all 3 still weigh fully at its start
    assert store.hit(policy, "a")[0] is False
    clock[0] += 30  # half of them have slid out: 1.5 used, room for 1
    assert store.hit(policy, "a")[:2] == (True, 0)
    assert store.hit(policy, "a")[0] is False
    clock[0] += 120  # two windows later nothing is left
    assert store.hit(policy, "a")[:2] == (True, 2)


def test_memory_store_stays_bounded() -> None:
    clock = [6000.0]
    store = MemoryStore(max_keys=100, clock=lambda: clock[0])
    policy = Policy("api", parse_policies("x", "3/minute")[0].item)
    for n in range(100):
        store.hit(policy, f"old{n}")
    clock[0] += 180  # every entry has expired: the next new key sweeps them out
    store.hit(policy, "new")
    assert list(store.tables["api"]) == ["new"]
    for n in range(500):  # all live: the oldest go, and the table never passes its bound
        store.hit(policy, f"live{n}")
        assert len(store.tables["api"]) <= 100


# Settings


@pytest.mark.parametrize("value", ["abc", "10/fortnight", "0/minute", "", "10/minute;x"])
def test_bad_limits_are_refused_at_startup(value: str) -> None:
    with pytest.raises(ValidationError, match="rate_limit_login"):
        Settings(_env_file=None, rate_limit_login=value)


def test_several_windows_are_several_policies() -> None:
    policies = parse_policies("login", "5/minute;100/day")
    assert [(p.name, p.limit, p.window) for p in policies] == [
        ("login-60s", 5, 60),
        ("login-86400s", 100, 86400),
    ]
    assert [p.name for p in parse_policies("api", "100 per 10 seconds")] == ["api"]


def test_the_key_is_the_token_hash_or_the_address() -> None:
    layer = RateLimit(None, settings=Settings(_env_file=None), login_paths=[LOGIN])  # type: ignore[arg-type]
    token = new_token()

    def caller(authorization: bytes | None) -> str:
        headers = [(b"authorization", authorization)] if authorization is not None else []
        return layer._caller({"headers": headers, "client": ("192.0.2.5", 1)})

    assert caller(b"Bearer " + token.encode()) == "t:" + token_hash(token)
    assert caller(b"bearer " + token.encode()) == "t:" + token_hash(token)
    for malformed in (b"Bearer nonsense", b"Basic " + token.encode(), b"Bearer wharf_\xff", None):
        assert caller(malformed) == "a:192.0.2.5"


# The fields and 429s


def test_fields_on_success_and_countdown(limited: Client, make_user: UserFactory) -> None:
    _, token = make_user()
    client = limited(rate_limit_api="5/minute")
    first = client.get(COMPANIES, headers=auth(token))
    assert first.status_code == 200
    policy, current = fields(first)
    assert policy == {"api": {"q": 5, "w": 60}}
    assert current["api"]["r"] == 4
    assert 1 <= current["api"]["t"] <= 60
    assert first.headers["ratelimit-policy"] == '"api";q=5;w=60'
    assert re.fullmatch(r'"api";r=4;t=\d+', first.headers["ratelimit"])
    assert remaining(client.get(COMPANIES, headers=auth(token))) == 3


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", f"{COMPANIES}/999", {}, 404),
        ("GET", "/api/v1/nowhere", {}, 404),
        ("DELETE", COMPANIES, {}, 405),
        ("POST", COMPANIES, {"json": {}}, 422),
        (
            "POST",
            COMPANIES,
            {"content": b"{", "headers": {"Content-Type": "application/json"}},
            400,
        ),
        ("GET", COMPANIES, {"headers": {"Authorization": "Bearer wharf_unknown"}}, 401),
        ("GET", COMPANIES, {"headers": {"Authorization": ""}}, 401),
    ],
)
def test_fields_on_errors(
    limited: Client,
    make_user: UserFactory,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    _, token = make_user()
    client = limited(rate_limit_api="50/minute")
    client.headers["Authorization"] = f"Bearer {token}"
    response = client.request(method, path, **kwargs)
    assert_problem(response, status)
    assert fields(response)[0] == {"api": {"q": 50, "w": 60}}
    assert remaining(response) == 49


def test_outside_the_api_nothing_is_limited(limited: Client) -> None:
    client = limited(rate_limit_api="1/minute")
    for _ in range(3):
        response = client.get("/healthz")
        assert response.status_code == 200
        assert "ratelimit" not in response.headers
        assert "ratelimit-policy" not in response.headers


def test_429_after_the_limit(limited: Client, make_user: UserFactory) -> None:
    _, token = make_user()
    client = limited(rate_limit_api="3/minute")
    before = metric("wharf_rate_limited_total", policy="api")
    for n in range(3):
        assert client.get(COMPANIES, headers=auth(token)).status_code == 200, n
    for _ in range(2):  # refused requests do not use up more of the quota
        retry_after = assert_429(client.get(COMPANIES, headers=auth(token)), "api")
        # At worst the window rolls over, then the burst's share decays by one request.
        assert retry_after <= 60 + 60 // 3
    # Writes, other paths and trailing slashes share the token's quota.
    assert_429(client.post(COMPANIES, json={"name": "Acme"}, headers=auth(token)), "api")
    assert_429(client.get(f"{COMPANIES}/", headers=auth(token)), "api")
    assert metric("wharf_rate_limited_total", policy="api") == before + 4


def test_several_windows_each_count(limited: Client, make_user: UserFactory) -> None:
    _, token = make_user()
    client = limited(rate_limit_api="3/minute;2/second")
    first = client.get(COMPANIES, headers=auth(token))
    policy, current = fields(first)
    assert policy == {"api-60s": {"q": 3, "w": 60}, "api-1s": {"q": 2, "w": 1}}
    assert (current["api-60s"]["r"], current["api-1s"]["r"]) == (2, 1)
    assert client.get(COMPANIES, headers=auth(token)).status_code == 200
    assert_429(client.get(COMPANIES, headers=auth(token)), "api-1s")
    time.sleep(2.05)  # the per-second window is empty again
    # The refused request used up nothing of the minute's quota: one is left.
    last = client.get(COMPANIES, headers=auth(token))
    assert last.status_code == 200
    assert fields(last)[1]["api-60s"]["r"] == 0
    refused = client.get(COMPANIES, headers=auth(token))
    assert_429(refused, "api-60s")
    assert int(refused.headers["retry-after"]) > 1


def test_limits_are_per_token(limited: Client, make_user: UserFactory) -> None:
    _, first = make_user()
    _, second = make_user()
    client = limited(rate_limit_api="2/minute")
    for _ in range(2):
        assert client.get(COMPANIES, headers=auth(first)).status_code == 200
    assert_429(client.get(COMPANIES, headers=auth(first)), "api")
    response = client.get(COMPANIES, headers=auth(second))
    assert response.status_code == 200
    assert remaining(response) == 1
    # The address is not the key for a token: another address with the first token is refused.
    other = limited(app=client.app, address="192.0.2.99")
    assert_429(other.get(COMPANIES, headers=auth(first)), "api")


def test_requests_without_a_token_are_limited_by_address(limited: Client) -> None:
    client = limited(rate_limit_api="2/minute")
    other = limited(app=client.app, address="192.0.2.2")
    for _ in range(2):
        assert_problem(client.get(COMPANIES), 401)
    assert_429(client.get(COMPANIES), "api")
    # A malformed token is keyed by address too, so inventing tokens does not escape it.
    assert_429(client.get(COMPANIES, headers={"Authorization": "Bearer nonsense"}), "api")
    assert_problem(other.get(COMPANIES), 401)


def test_cache_hits_count_against_the_limit(limited: Client, make_user: UserFactory) -> None:
    _, token = make_user()
    client = limited(rate_limit_api="4/minute", cache="on")
    assert client.get(COMPANIES, headers=auth(token)).status_code == 200
    hits = metric("wharf_cache_lookups_total", result="hit")
    statuses = [client.get(COMPANIES, headers=auth(token)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert metric("wharf_cache_lookups_total", result="hit") == hits + 3


def test_off_switch(limited: Client, make_user: UserFactory) -> None:
    _, token = make_user()
    client = limited(rate_limit_api="1/minute", rate_limits_enabled=False)
    for _ in range(3):
        response = client.get(COMPANIES, headers=auth(token))
        assert response.status_code == 200
        assert "ratelimit" not in response.headers


# The login guard


def test_wrong_passwords_for_one_account_get_429(limited: Client, make_user: UserFactory) -> None:
    make_user(email="ada@example.com")
    make_user(email="bob@example.com")
    client = limited(rate_limit_login="3/minute", rate_limit_login_address="100/minute")
    first = login(client, "ada@example.com")
    assert_problem(first, 401)
    assert fields(first) == (
        {"login": {"q": 3, "w": 60}, "login-address": {"q": 100, "w": 60}},
        {
            "login": {"r": 2, "t": fields(first)[1]["login"]["t"]},
            "login-address": {"r": 99, "t": fields(first)[1]["login-address"]["t"]},
        },
    )
    assert_problem(login(client, "ADA@example.com "), 401)  # the same account, however typed
    assert_problem(client.post(f"{LOGIN}/", data={"username": "ada@example.com"}), 422)
    # Four guesses in, the fourth is refused before the password is even checked, the right
    # one included.
    assert_429(login(client, "ada@example.com", PASSWORD), "login")
    # Another account from the same address, and the same account from another address, are
    # not affected.
    assert login(client, "bob@example.com", PASSWORD).status_code == 200
    other = limited(app=client.app, address="192.0.2.7")
    assert other.post(LOGIN, data={"username": "ada@example.com", "password": PASSWORD}).is_success


def test_spraying_many_accounts_from_one_address_gets_429(limited: Client) -> None:
    client = limited(rate_limit_login="3/minute", rate_limit_login_address="5/minute")
    for n in range(5):
        assert_problem(login(client, f"user{n}@example.com"), 401)
    assert_429(login(client, "user99@example.com"), "login-address")
    assert (
        limited(app=client.app, address="192.0.2.8")
        .post(LOGIN, data={"username": "user99@example.com", "password": "x"})
        .status_code
        == 401
    )


def test_logins_do_not_use_the_api_quota(limited: Client, make_user: UserFactory) -> None:
    make_user(email="ada@example.com")
    client = limited(rate_limit_api="2/minute")
    for _ in range(3):
        response = client.post(LOGIN, data={"username": "ada@example.com", "password": PASSWORD})
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
    assert remaining(client.get(COMPANIES, headers=auth(token))) == 1


def test_a_multipart_login_cannot_dodge_the_account_key(limited: Client) -> None:
    client = limited(rate_limit_login="2/minute", rate_limit_login_address="100/minute")
    for n in range(2):
        files = {"username": (None, f"user{n}@example.com"), "password": (None, "x")}
        assert client.post(LOGIN, files=files).status_code in (401, 415, 422)
    files = {"username": (None, "someone@example.com"), "password": (None, "x")}
    assert_429(client.post(LOGIN, files=files), "login")


# Redis


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, so parallel runs on one Redis never collide."""
    import redis

    prefix = f"wharf-test-{uuid.uuid4().hex}"
    yield prefix
    with redis.Redis.from_url(redis_url, socket_timeout=2) as client:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


def test_redis_counts_racing_requests_exactly(redis_url: str, prefix: str) -> None:
    # One script per request checks and counts atomically: 60 requests racing for 10 slots
    # get exactly 10, never one more. The timeout is generous: 60 connections opened at once on
    # a loaded CI machine took longer than the production 0.5 s, and the store then (rightly)
    # failed open, which is not what this test is about.
    store = stores.RedisStore(redis_url, prefix, timeout=10)
    policy = parse_policies("api", "10/minute")[0]

    async def race() -> list[bool]:
        results = await asyncio.gather(*(store.hit([(policy, "k")]) for _ in range(60)))
        return [r[0][0] for r in results if r is not None]

    allowed = asyncio.run(race())
    assert len(allowed) == 60
    assert allowed.count(True) == 10


def test_redis_refused_by_one_policy_counts_against_none(redis_url: str, prefix: str) -> None:
    store = stores.RedisStore(redis_url, prefix)
    tight, loose = parse_policies("login", "2/minute")[0], parse_policies("address", "5/minute")[0]

    async def hits(n: int) -> list[list[tuple[bool, int, int]] | None]:
        return [await store.hit([(tight, "acct"), (loose, "addr")]) for _ in range(n)]

    first = asyncio.run(hits(4))
    assert [[v[0] for v in r] for r in first if r] == [
        [True, True],
        [True, True],
        [False, True],
        [False, True],
    ]
    # The two refused requests used nothing of the loose policy: 5 - 2 - 1 = 2 left.
    only_loose = asyncio.run(store.hit([(loose, "addr")]))
    assert only_loose is not None
    assert only_loose[0][:2] == (True, 2)


def test_redis_requests_arriving_together_share_one_call_counted_as_one_call_each(
    redis_url: str, prefix: str
) -> None:
    store = stores.RedisStore(redis_url, prefix, timeout=10)
    tight = parse_policies("api", "3/minute")[0]
    loose = parse_policies("address", "100/minute")[0]
    calls = 0

    async def together() -> list[list[tuple[bool, int, int]] | None]:
        batch = store._batch(asyncio.get_running_loop())
        script = batch.script

        async def counted(**kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await script(**kwargs)

        batch.script = cast("AsyncScript", counted)
        # Three callers send five requests each, all at once, each under both policies.
        return await asyncio.gather(
            *(
                store.hit([(tight, f"caller{n}"), (loose, "shared")])
                for n in range(3)
                for _ in range(5)
            )
        )

    results = asyncio.run(together())
    assert calls == 1  # fifteen requests, one round trip
    for n in range(3):
        mine = results[5 * n : 5 * n + 5]
        assert [r[0][0] for r in mine if r] == [True, True, True, False, False]
        assert [r[0][1] for r in mine if r] == [2, 1, 0, 0, 0]
    # Only the nine requests the tight policy let through counted under the loose one.
    after = asyncio.run(store.hit([(loose, "shared")]))
    assert after is not None
    assert after[0][:2] == (True, 100 - 9 - 1)


def test_two_apps_sharing_redis_share_the_limit(
    limited: Client, make_user: UserFactory, redis_url: str, prefix: str
) -> None:
    _, token = make_user()
    options = {"redis_url": redis_url, "redis_key_prefix": prefix, "cache": "off"}
    one = limited(rate_limit_api="5/minute", **options)
    two = limited(rate_limit_api="5/minute", **options)
    assert one.app is not two.app
    got = [remaining(c.get(COMPANIES, headers=auth(token))) for c in (one, two, one, two, one)]
    assert got == [4, 3, 2, 1, 0]
    assert_429(two.get(COMPANIES, headers=auth(token)), "api")
    assert_429(one.get(COMPANIES, headers=auth(token)), "api")
    # The login guard is shared too.
    guard = {"rate_limit_login": "2/minute", **options}
    one, two = limited(**guard), limited(**guard)
    assert_problem(login(one, "ada@example.com"), 401)
    assert_problem(login(two, "ada@example.com"), 401)
    assert_429(login(one, "ada@example.com"), "login")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_redis_down_serves_unlimited_without_5xx(limited: Client, make_user: UserFactory) -> None:
    _, token = make_user()
    before = metric("wharf_backend_errors_total", backend="redis")
    client = limited(rate_limit_api="2/minute", redis_url=DOWN_URL, cache="off")
    logger = logging.getLogger("wharf.ratelimit")
    logs = Records()
    logger.addHandler(logs)
    try:
        responses = [client.get(COMPANIES, headers=auth(token)) for _ in range(5)]
        responses.append(login(client, "ada@example.com"))
    finally:
        logger.removeHandler(logs)
    assert [r.status_code for r in responses] == [200] * 5 + [401]
    for response in responses:
        assert "ratelimit-policy" in response.headers  # the policy is known, the count not
        assert "ratelimit" not in response.headers
    assert metric("wharf_backend_errors_total", backend="redis") > before
    assert len(logs.records) == 1  # at most once per few seconds, not once per request
    assert "redis unavailable" in logs.records[0].getMessage()


@contextmanager
def redis_server(port: int) -> Iterator[str]:
    """A private redis-server on `port`, killed on exit."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as client:
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    time.sleep(0.05)
            else:
                pytest.fail(f"redis-server on port {port} did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_redis_stopped_and_restarted(
    limited: Client, make_user: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = make_user()
    monkeypatch.setattr(stores, "_PAUSE_SECONDS", 0.0)  # retry Redis on every request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with redis_server(port) as url:
        client = limited(rate_limit_api="3/minute", redis_url=url, cache="off")
        assert remaining(client.get(COMPANIES, headers=auth(token))) == 2
    # Stopped: every request is served, unlimited, and none is a 5xx.
    assert [client.get(COMPANIES, headers=auth(token)).status_code for _ in range(5)] == [200] * 5
    with redis_server(port):
        # Back (and empty): limiting resumes by itself.
        got = [client.get(COMPANIES, headers=auth(token)) for _ in range(4)]
        assert [r.status_code for r in got] == [200, 200, 200, 429]
        assert remaining(got[0]) == 2
