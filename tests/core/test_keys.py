"""The keyring: sealing, AAD binding, rotation, key files, and never showing a key."""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from wharf.core.config import Settings
from wharf.core.keys import (
    DecryptFailed,
    InvalidKeyring,
    Keyring,
    MissingKeys,
    Sealed,
    UnknownKey,
    UnsafeKeyFile,
    generate_key_file,
    key_file,
    new_key_id,
    remove_key,
    rotate_key_file,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
TEXT_A = base64.b64encode(KEY_A).decode()
TEXT_B = base64.b64encode(KEY_B).decode()
ROW_1 = b"wharf:certificate:1:user:1"
ROW_2 = b"wharf:certificate:2:user:1"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([("a", KEY_A), ("b", KEY_B)])


def settings_for(tmp_path: Path, keys: str | None = None) -> Settings:
    return Settings(
        _env_file=None,
        var_dir=tmp_path / "var",
        key_encryption_keys=None if keys is None else SecretStr(keys),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_seal_then_open(keyring: Keyring) -> None:
    sealed = keyring.seal(b"private key bytes", aad=ROW_1)
    assert sealed.key_id == keyring.current_id == "a"
    assert b"private key bytes" not in sealed.blob
    assert len(sealed.blob) == 12 + len(b"private key bytes") + 16
    assert keyring.open(sealed, aad=ROW_1) == b"private key bytes"


def test_each_seal_draws_a_fresh_nonce(keyring: Keyring) -> None:
    first, second = keyring.seal(b"same", aad=ROW_1), keyring.seal(b"same", aad=ROW_1)
    assert first.blob[:12] != second.blob[:12]
    assert first.blob != second.blob


def test_a_ciphertext_copied_onto_another_row_does_not_open(keyring: Keyring) -> None:
    sealed = keyring.seal(b"secret of row 1", aad=ROW_1)
    with pytest.raises(DecryptFailed) as caught:
        keyring.open(sealed, aad=ROW_2)
    assert caught.value.status == 503
    assert caught.value.title == "Stored data cannot be decrypted"


@pytest.mark.parametrize("position", [0, 11, 12, -1])
def test_tampering_is_detected(keyring: Keyring, position: int) -> None:
    sealed = keyring.seal(b"secret", aad=ROW_1)
    blob = bytearray(sealed.blob)
    blob[position] ^= 1
    with pytest.raises(DecryptFailed):
        keyring.open(Sealed(sealed.key_id, bytes(blob)), aad=ROW_1)


def test_a_truncated_blob_fails_cleanly(keyring: Keyring) -> None:
    with pytest.raises(DecryptFailed):
        keyring.open(Sealed("a", b"short"), aad=ROW_1)


def test_a_value_sealed_under_another_key_id_fails(keyring: Keyring) -> None:
    sealed = keyring.seal(b"secret", aad=ROW_1)
    with pytest.raises(DecryptFailed):
        keyring.open(Sealed("b", sealed.blob), aad=ROW_1)


def test_an_unknown_key_id_says_which_key_to_add_back(keyring: Keyring) -> None:
    with pytest.raises(UnknownKey) as caught:
        keyring.open(Sealed("gone", b"x" * 40), aad=ROW_1)
    assert caught.value.status == 503
    assert "key gone" in caught.value.detail
    assert "WHARF_KEY_ENCRYPTION_KEYS" in caught.value.detail


def test_repr_hides_the_key_bytes(keyring: Keyring) -> None:
    shown = repr(keyring) + str(keyring)
    assert "'a'" in shown
    for secret in (TEXT_A, TEXT_B, repr(KEY_A), KEY_A.hex()):
        assert secret not in shown


@pytest.mark.parametrize(
    "text",
    [
        f"a:{TEXT_A},b:{TEXT_B}",
        f" a : {TEXT_A} , b:{TEXT_B} ,",
        f"# current first\na:{TEXT_A}\n\n  # retired\nb:{TEXT_B}  # since May\n",
        f"a:{TEXT_A}\r\nb:{TEXT_B}\r\n",
    ],
)
def test_parse_formats(text: str) -> None:
    keyring = Keyring.parse(text)
    assert keyring.ids() == ["a", "b"]
    assert keyring.current_id == "a"
    sealed = Keyring([("b", KEY_B)]).seal(b"x", aad=ROW_1)
    assert keyring.open(sealed, aad=ROW_1) == b"x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no keys"),
        ("# only a comment\n\n", "no keys"),
        (TEXT_A, "entry 1 is not `id:base64`"),
        (f"a:{TEXT_A},{TEXT_B}", "entry 2 is not `id:base64`"),
        (f"{TEXT_A}:a", "entry 1 is not `id:base64`"),
        (f"bad id:{TEXT_A}", "entry 1 is not `id:base64`"),
        (f"{'x' * 33}:{TEXT_A}", "entry 1 is not `id:base64`"),
        (f"a:{TEXT_A[:-1]}!", "key a is not valid base64"),
        (f"a:{TEXT_A}x", "key a is not valid base64"),
        (f"a:{TEXT_A}=", "key a is not valid base64"),
        (f"a:{base64.b64encode(KEY_A[:16]).decode()}", "key a is 16 bytes, not 32"),
        (f"a:{TEXT_A},a:{TEXT_B}", "key id a appears twice"),
    ],
)
def test_parse_refuses_bad_input_without_quoting_it(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        Keyring.parse(text)
    shown = str(caught.value)
    for secret in (TEXT_A, TEXT_A[:-1], TEXT_B, TEXT_A[:16], base64.b64encode(KEY_A[:16]).decode()):
        assert secret not in shown


def test_the_constructor_checks_its_keys() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        Keyring([])
    with pytest.raises(ValueError, match="31 bytes"):
        Keyring([("a", KEY_A[:31])])
    with pytest.raises(ValueError, match="appears twice"):
        Keyring([("a", KEY_A), ("a", KEY_B)])
    with pytest.raises(ValueError, match=r"key 2: an id must match"):
        Keyring([("a", KEY_A), ("", KEY_B)])


def test_load_prefers_the_setting_to_the_file(tmp_path: Path) -> None:
    generate_key_file(key_file(settings_for(tmp_path)))
    keyring = Keyring.load(settings_for(tmp_path, f"env:{TEXT_A}"))
    assert keyring.ids() == ["env"]


def test_load_reads_the_key_file_without_the_setting(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    key_id = generate_key_file(key_file(settings))
    assert Keyring.load(settings).ids() == [key_id]
    # A blank variable is taken as unset, not as an empty keyring.
    assert Keyring.load(settings_for(tmp_path, "  ")).ids() == [key_id]


def test_load_without_keys_names_the_fix(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with pytest.raises(MissingKeys) as caught:
        Keyring.load(settings)
    assert caught.value.status == 503
    assert caught.value.title == "No encryption key"
    assert "wharf keys generate" in caught.value.detail
    assert "WHARF_KEY_ENCRYPTION_KEYS" in caught.value.detail
    assert str(tmp_path / "var" / "keys") in caught.value.detail


def test_load_refuses_a_bad_setting_without_quoting_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyring) as caught:
        Keyring.load(settings_for(tmp_path, f"a:{TEXT_A[:20]}"))
    assert isinstance(caught.value, MissingKeys)
    assert "WHARF_KEY_ENCRYPTION_KEYS is not a valid keyring" in caught.value.detail
    assert TEXT_A[:20] not in caught.value.detail


def test_load_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    path = key_file(settings)
    generate_key_file(path)
    path.chmod(0o644)
    with pytest.raises(UnsafeKeyFile) as caught:
        Keyring.load(settings)
    assert isinstance(caught.value, MissingKeys)
    assert f"chmod 600 {path}" in caught.value.detail
    assert "0644" in caught.value.detail
    path.chmod(0o600)
    assert len(Keyring.load(settings).ids()) == 1


def test_load_refuses_a_broken_key_file(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    path = key_file(settings)
    path.parent.mkdir(parents=True)
    for content in (b"a:not base64!\n", b"\xff\xfe"):
        path.write_bytes(content)
        path.chmod(0o600)
        with pytest.raises(InvalidKeyring, match="is not a valid keyring") as caught:
            Keyring.load(settings)
        assert "not base64!" not in caught.value.detail


def test_generate_writes_a_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "var" / "keys"
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        key_id = generate_key_file(path)
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    assert re.fullmatch(r"k\d{8}-[0-9a-f]{4}", key_id)
    assert Keyring.parse(path.read_text()).ids() == [key_id]
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        generate_key_file(path)
    assert path.read_bytes() == before


def test_rotate_adds_a_current_key_and_old_values_still_open(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    first = generate_key_file(path)
    old = Keyring.parse(path.read_text()).seal(b"sealed before rotation", aad=ROW_1)

    second = rotate_key_file(path)

    assert mode(path) == 0o600
    assert second != first
    keyring = Keyring.parse(path.read_text())
    assert keyring.ids() == [second, first]
    assert keyring.current_id == second
    assert keyring.seal(b"new", aad=ROW_1).key_id == second
    assert keyring.open(old, aad=ROW_1) == b"sealed before rotation"
    assert [p.name for p in tmp_path.iterdir()] == ["keys"]  # no temporary file left behind


def test_rotate_fixes_the_mode_of_a_loose_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"a:{TEXT_A}\n")
    path.chmod(0o644)
    rotate_key_file(path)
    assert mode(path) == 0o600
    assert Keyring.parse(path.read_text()).ids()[1:] == ["a"]


def test_remove_key_drops_a_retired_key_only(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    first = generate_key_file(path)
    second = rotate_key_file(path)
    third = rotate_key_file(path)

    with pytest.raises(ValueError, match="is current"):
        remove_key(path, third)
    with pytest.raises(ValueError, match="no key nope"):
        remove_key(path, "nope")

    remove_key(path, first)
    assert Keyring.parse(path.read_text()).ids() == [third, second]
    assert mode(path) == 0o600


def test_new_key_ids_are_valid_and_distinct() -> None:
    ids = {new_key_id() for _ in range(20)}
    assert len(ids) > 1
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,32}", key_id) for key_id in ids)
