"""Private keys encrypted at rest (issue 7), on both databases: a dump of the database holds
no plaintext, a ciphertext opens only on its own row, keys rotate and rewrap through the CLI
without losing anything, and the server refuses to start without a key."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx2 import Response
from pydantic import SecretStr
from sqlalchemy import Engine, select, update
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from tests.certificates.pki import KeyFormat, KeyType, b64, encode_key, make_certificate, make_key
from tests.conftest import UserFactory, auth
from wharf.accounts import service as accounts
from wharf.app import create_app
from wharf.certificates import service
from wharf.certificates.crypto import certificate_aad
from wharf.certificates.models import Certificate
from wharf.certificates.service import rewrap_keys
from wharf.cli import app as cli
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine
from wharf.core.keys import DecryptFailed, Keyring, MissingKeys, Sealed, UnknownKey, key_file
from wharf.core.security import Principal

runner = CliRunner()
HOUR = timedelta(hours=1)
# Several types and formats: PEM keys leak as lines, DER keys as raw bytes.
STORED: list[tuple[KeyType, KeyFormat]] = [
    ("rsa", "pkcs8-pem"),
    ("rsa", "pkcs1-der"),
    ("ec", "sec1-pem"),
    ("ec", "pkcs8-der"),
    ("ed25519", "pkcs8-pem"),
    ("ed25519", "pkcs8-der"),
]
Rows = dict[int, tuple[str, bytes, int]]  # id -> (key_id, sealed blob, user_id)


def post(
    client: TestClient, user_id: int, private_key: str, body: str = "x", **kw: Any
) -> Response:
    """Create a certificate through the API; the response."""
    fields = {"private_key": private_key, "body": body}
    return client.post(f"/api/v1/users/{user_id}/certificates", json=fields, **kw)


def rows(engine: Engine) -> Rows:
    query = select(
        Certificate.id, Certificate.key_id, Certificate.private_key_sealed, Certificate.user_id
    )
    with engine.connect() as conn:
        return {
            r.id: (r.key_id, bytes(r.private_key_sealed), r.user_id) for r in conn.execute(query)
        }


def open_row(keyring: Keyring, row_id: int, row: tuple[str, bytes, int]) -> bytes:
    key_id, blob, user_id = row
    return keyring.open(Sealed(key_id, blob), aad=certificate_aad(row_id, user_id))


def assert_all_open(engine: Engine, keyring: Keyring, originals: dict[int, bytes]) -> None:
    stored = rows(engine)
    assert set(stored) == set(originals)
    for row_id, row in stored.items():
        assert open_row(keyring, row_id, row) == originals[row_id], f"row {row_id}"


# The dump grep


def dump(engine: Engine, url: str) -> bytes:
    """Every byte of the database as a backup would hold it."""
    if engine.dialect.name == "sqlite":
        # The file and its -wal (and -shm): not checkpointed, the WAL holds every page version.
        path = Path(make_url(url).database or "")
        files = sorted(path.parent.glob(path.name + "*"))
        assert any(f.name.endswith("-wal") for f in files), files  # WAL mode: the log is read too
        return b"".join(f.read_bytes() for f in files)
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run(["pg_dump", "-d", libpq], capture_output=True, check=True, timeout=120)
    return done.stdout


def plaintexts(sent: str, public: str) -> list[bytes]:
    """The forms a stored key could leak in: the base64 sent and its bytes, each PEM line,
    the DER bytes and their base64, and hex of both (pg_dump writes bytea as hex). A PEM line
    that also occurs in the certificate is public key material (the RSA modulus or EC point,
    which private keys repeat), not a leak, and is left out."""
    raw = base64.b64decode(sent)
    lines = [ln for ln in raw.decode(errors="replace").splitlines() if "-----" not in ln]
    der = base64.b64decode("".join(lines)) if raw.startswith(b"-----BEGIN") else raw
    flat = "".join(public.split())
    pem_lines = [ln.encode() for ln in lines if len(ln) >= 16 and ln not in flat]
    texts = [sent, b64(der), raw.hex(), der.hex()]
    return [raw, der, *[t.encode() for t in texts], *pem_lines]


def test_a_database_dump_holds_no_plaintext_key(
    client: TestClient, make_user: UserFactory, engine: Engine, database_url: str
) -> None:
    uid, _ = make_user()
    other, _ = make_user()
    needles: list[tuple[str, bytes]] = []
    bodies: list[str] = []
    for index, (key_type, fmt) in enumerate(STORED):
        key = make_key(key_type, 10 + index)
        body, _ = make_certificate(key_type, key=key, common_name=f"dump{index}.example.com")
        sent = encode_key(key, fmt)
        # One through Idempotency-Key, whose stored response is in the dump too.
        headers = {"Idempotency-Key": f"dump-{index}"} if index == 0 else {}
        created = post(client, uid, sent, body, headers=headers)
        assert created.status_code == 201, created.text
        needles += [(f"{key_type} {fmt}", n) for n in plaintexts(sent, body)]
        bodies.append(body)
    # The seed's opaque key, and a real key refused as another's (a failed write stores nothing).
    opaque = b64(b"the seed's opaque private key bytes")
    assert post(client, other, opaque, "test body").status_code == 201
    needles += [("opaque", n) for n in plaintexts(opaque, "")]
    wrong = encode_key(make_key("ec", 30), "pkcs8-pem")
    refused = post(client, uid, wrong, bodies[2], headers={"Idempotency-Key": "dump-refused"})
    assert refused.status_code == 422, refused.text
    needles += [("refused", n) for n in plaintexts(wrong, bodies[2])]

    data = dump(engine, database_url)

    # The control, so this test can fail: what is stored in the clear is found.
    for body in bodies:
        for line in body.splitlines()[1:-1]:
            assert line.encode() in data, "the dump does not hold the certificate bodies"
    hits = [(what, needle[:24]) for what, needle in needles if needle in data]
    assert hits == [], f"plaintext key material in the dump: {hits}"


# Associated data: a ciphertext opens on its own row only


def test_a_ciphertext_copied_onto_another_row_does_not_open(
    client: TestClient, make_user: UserFactory, engine: Engine, settings: Settings
) -> None:
    keys = {}
    for name in ("a", "b"):
        uid, _ = make_user()
        raw = f"private key of {name}".encode()
        created = post(client, uid, b64(raw))
        assert created.status_code == 201, created.text
        keys[name] = (created.json()["id"], raw)
    (a_id, a_raw), (b_id, b_raw) = keys["a"], keys["b"]
    keyring = Keyring.load(settings)
    before = rows(engine)
    assert open_row(keyring, b_id, before[b_id]) == b_raw  # each opens on its own row
    # Stored sealed: nonce (12) + ciphertext + tag (16), under the current key.
    assert before[a_id][0] == keyring.current_id
    assert len(before[a_id][1]) == 12 + len(a_raw) + 16
    assert a_raw not in before[a_id][1]

    with engine.begin() as conn:
        a = conn.execute(
            select(Certificate.key_id, Certificate.private_key_sealed).where(Certificate.id == a_id)
        ).one()
        conn.execute(
            update(Certificate)
            .where(Certificate.id == b_id)
            .values(key_id=a.key_id, private_key_sealed=a.private_key_sealed)
        )
    after = rows(engine)
    assert after[b_id][:2] == after[a_id][:2]  # the copy took
    with pytest.raises(DecryptFailed):
        open_row(keyring, b_id, after[b_id])
    assert open_row(keyring, a_id, after[a_id]) == a_raw
    # Nor does B's own ciphertext open on row A.
    with pytest.raises(DecryptFailed):
        open_row(keyring, a_id, (before[b_id][0], before[b_id][1], after[a_id][2]))


# Rotation and rewrap through the CLI, with a key file


def invoke(*args: str) -> Result:
    return runner.invoke(cli, list(args))


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


@pytest.fixture
def key_settings(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment: the test's database, a fresh var dir, no keys in the env."""
    var = tmp_path / "cli-var"
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("WHARF_DATABASE_URL", database_url)
    monkeypatch.setenv("WHARF_VAR_DIR", str(var))
    monkeypatch.delenv("WHARF_KEY_ENCRYPTION_KEYS", raising=False)
    return Settings(
        _env_file=None, database_url=database_url, var_dir=var, key_encryption_keys=None
    )


@pytest.fixture
def db(key_settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(key_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def owner(db: Engine) -> int:
    with db.begin() as conn:
        row = accounts.create_user(
            conn, email="owner@example.com", name="Owner", password="correct horse battery"
        )
    return int(row["id"])


def store(engine: Engine, keyring: Keyring, user_id: int, count: int) -> dict[int, bytes]:
    """`count` certificates through the service; their ids and the key bytes sent."""
    viewer = Principal(user_id=user_id, role="user", token_id=0, scopes=frozenset({"write"}))
    made: dict[int, bytes] = {}
    for _ in range(count):
        key_type, fmt = STORED[len(made) % len(STORED)]
        key = make_key(key_type, len(made))
        body, _ = make_certificate(key_type, key=key)
        sent = encode_key(key, fmt)
        with engine.begin() as conn:
            row = service.create_certificate(
                conn,
                keyring=keyring,
                viewer=viewer,
                user_id=user_id,
                private_key=sent,
                body=body,
                active=False,
            )
        made[row["id"]] = base64.b64decode(sent)
    return made


def key_ids(engine: Engine) -> list[str]:
    return sorted(key_id for key_id, _, _ in rows(engine).values())


def test_rotate_rewrap_then_remove_the_old_key(
    key_settings: Settings, db: Engine, owner: int
) -> None:
    ok(invoke("keys", "generate"))
    first = Keyring.load(key_settings)
    old = first.current_id
    originals = store(db, first, owner, 3)
    ok(invoke("keys", "rotate"))
    second = Keyring.load(key_settings)
    new = second.current_id
    assert new != old
    assert second.ids() == [new, old]
    newer = store(db, second, owner, 2)  # new writes go under the new key at once
    originals |= newer
    assert key_ids(db) == sorted([old] * 3 + [new] * 2)
    untouched = {i: rows(db)[i] for i in newer}

    result = ok(invoke("keys", "rewrap", "--batch", "2"))
    assert f"Re-encrypted 3 values under key {new}" in result.output
    assert key_ids(db) == [new] * 5
    stored = rows(db)
    assert {i: stored[i] for i in newer} == untouched  # already current: not rewritten
    assert_all_open(db, second, originals)

    # Safe to run twice: nothing left to do, nothing rewritten.
    assert "Re-encrypted 0 values" in ok(invoke("keys", "rewrap")).output
    assert rows(db) == stored

    refused = invoke("keys", "remove", new)  # the current key cannot go
    assert refused.exit_code != 0
    assert "current" in refused.output
    ok(invoke("keys", "remove", old))
    third = Keyring.load(key_settings)
    assert third.ids() == [new]
    assert_all_open(db, third, originals)


def test_removing_the_old_key_before_the_rewrap_loses_nothing(
    key_settings: Settings, db: Engine, owner: int
) -> None:
    ok(invoke("keys", "generate"))
    first = Keyring.load(key_settings)
    old = first.current_id
    originals = store(db, first, owner, 2)
    ok(invoke("keys", "rotate"))
    originals |= store(db, Keyring.load(key_settings), owner, 1)
    path = key_settings.var_dir / "keys"
    saved = path.read_bytes()
    early = invoke("keys", "remove", old)  # too early: two rows are still under it
    assert early.exit_code != 0
    assert "2 values are still sealed" in early.output
    ok(invoke("keys", "remove", "--force", old))  # the operator insists
    before = rows(db)

    result = invoke("keys", "rewrap")
    assert result.exit_code != 0, result.output
    assert f"2 values are under key {old}" in result.output
    assert "Traceback" not in result.output
    assert rows(db) == before  # byte for byte: nothing rewritten, nothing lost
    # Opening an affected row says which key to add back.
    lacking = Keyring.load(key_settings)
    affected = next(i for i, row in before.items() if row[0] == old)
    with pytest.raises(UnknownKey) as caught:
        open_row(lacking, affected, before[affected])
    assert old in caught.value.detail

    path.write_bytes(saved)  # the key is added back (the file keeps its mode 0600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "Re-encrypted 2 values" in ok(invoke("keys", "rewrap")).output
    restored = Keyring.load(key_settings)
    assert key_ids(db) == [restored.current_id] * 3
    assert_all_open(db, restored, originals)


def test_a_running_server_seals_under_the_key_rotated_in(
    key_settings: Settings, db: Engine, owner: int
) -> None:
    # `wharf keys rotate` says new data is sealed under the new key at once, and the issue
    # says that after a rewrap the old key can go. A server running through the rotation must
    # therefore seal under the new key, or what it writes after the rewrap is lost with the
    # old key.
    ok(invoke("keys", "generate"))
    old = Keyring.load(key_settings).current_id
    with db.begin() as conn:
        scopes = frozenset({"read", "write"})
        token = accounts.issue_token(conn, user_id=owner, name="t", scopes=scopes, lifetime=HOUR)
    originals: dict[int, bytes] = {}
    with TestClient(create_app(key_settings)) as api:
        for step in ("before", "after"):
            raw = f"key stored {step} the rotation".encode()
            created = post(api, owner, b64(raw), headers=auth(token))
            assert created.status_code == 201, created.text
            originals[created.json()["id"]] = raw
            if step == "before":
                ok(invoke("keys", "rotate"))
                ok(invoke("keys", "rewrap"))
    ok(invoke("keys", "remove", old))  # rotate, rewrap, remove: the documented procedure
    keyring = Keyring.load(key_settings)
    lost = [i for i, row in rows(db).items() if row[0] not in keyring.ids()]
    assert lost == [], f"rows {lost} are sealed under the removed key {old}"
    assert_all_open(db, keyring, originals)


OLD_KEY, NEW_KEY = ("old", bytes(range(32))), ("new", bytes(range(32, 64)))


class Interrupted(Keyring):
    """A keyring that fails after `seals` seals: a rewrap stopped in the middle."""

    def __init__(self, keys: list[tuple[str, bytes]], *, seals: int) -> None:
        super().__init__(keys)
        self.left = seals

    def seal(self, plaintext: bytes, *, aad: bytes) -> Sealed:
        if self.left == 0:
            raise RuntimeError("interrupted")
        self.left -= 1
        return super().seal(plaintext, aad=aad)


@pytest.mark.parametrize("batch", [1, 2, 5, 500])
def test_rewrap_in_batches_of_any_size(db: Engine, owner: int, batch: int) -> None:
    originals = store(db, Keyring([OLD_KEY]), owner, 5)
    current = Keyring([NEW_KEY, OLD_KEY])
    report = rewrap_keys(db, current, batch=batch)
    assert (report.rewrapped, dict(report.missing)) == (5, {})
    assert key_ids(db) == ["new"] * 5
    assert_all_open(db, Keyring([NEW_KEY]), originals)


def test_an_interrupted_rewrap_keeps_its_committed_batches_and_resumes(
    db: Engine, owner: int
) -> None:
    originals = store(db, Keyring([OLD_KEY]), owner, 5)
    # Batches of 2: the first commits, the second fails at its second row and rolls back.
    with pytest.raises(RuntimeError, match="interrupted"):
        rewrap_keys(db, Interrupted([NEW_KEY, OLD_KEY], seals=3), batch=2)
    assert [rows(db)[i][0] for i in sorted(originals)] == ["new", "new", "old", "old", "old"]
    assert_all_open(db, Keyring([NEW_KEY, OLD_KEY]), originals)  # neither half is lost

    report = rewrap_keys(db, Keyring([NEW_KEY, OLD_KEY]), batch=2)
    assert report.rewrapped == 3  # only what was left
    assert key_ids(db) == ["new"] * 5
    assert_all_open(db, Keyring([NEW_KEY]), originals)
    assert rewrap_keys(db, Keyring([NEW_KEY, OLD_KEY]), batch=2).rewrapped == 0


# Without a key, nothing starts


@pytest.mark.parametrize("configured", [None, SecretStr("  ")], ids=["unset", "blank"])
def test_the_server_refuses_to_start_without_a_key(
    key_settings: Settings, configured: SecretStr | None
) -> None:
    # A blank WHARF_KEY_ENCRYPTION_KEYS (a compose file's `=`) means unset, not a key.
    settings = key_settings.model_copy(update={"key_encryption_keys": configured})
    app = create_app(settings)
    try:
        with pytest.raises(MissingKeys) as caught, TestClient(app):
            pass
        assert "wharf keys generate" in str(caught.value)
    finally:
        app.state.engine.dispose()
    # The control: with the key file the command writes, the same settings start.
    ok(invoke("keys", "generate"))
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200


def test_serve_exits_1_naming_the_command(
    key_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[dict[str, Any]] = []
    monkeypatch.setattr("wharf.cli.uvicorn.run", lambda *a, **kw: started.append(kw))
    result = invoke("serve", "--port", "1")
    assert result.exit_code == 1, result.output
    assert "wharf keys generate" in result.output
    assert not started, "uvicorn was started without a key"
    ok(invoke("keys", "generate"))
    ok(invoke("serve", "--port", "1"))
    assert len(started) == 1


def test_generate_writes_a_private_key_file_once(key_settings: Settings) -> None:
    path = key_settings.var_dir / "keys"
    umask = os.umask(0)  # the mode must not depend on the operator's umask
    try:
        result = ok(invoke("keys", "generate"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_bytes()
    key_id, _, secret = next(
        ln for ln in written.decode().splitlines() if not ln.startswith("#")
    ).partition(":")
    assert key_id in result.output
    assert secret not in result.output  # the key itself is never printed

    again = invoke("keys", "generate")
    assert again.exit_code != 0
    assert "exists" in again.output
    quiet = ok(invoke("keys", "generate", "--if-missing"))
    assert quiet.output == ""
    assert path.read_bytes() == written  # neither run touched the keys


def test_key_file_commands_refuse_while_the_variable_is_in_use(
    key_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHARF_KEY_ENCRYPTION_KEYS", f"kenv:{b64(bytes(32))}")
    for command in (["keys", "generate"], ["keys", "rotate"], ["keys", "remove", "kold"]):
        refused = invoke(*command)
        assert refused.exit_code == 1
        assert "WHARF_KEY_ENCRYPTION_KEYS is set" in refused.output
    assert not key_file(key_settings).exists()
    ok(invoke("keys", "generate", "--if-missing"))  # `make run` with keys from the variable
