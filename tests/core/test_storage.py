"""Content-addressed local storage: keys, idempotent atomic writes, and refused keys."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from wharf.core.storage import LocalStorage, Storage, digest_of, is_key, key_for, media_type

DATA = b"\xff\xd8\xff a picture of a car"
DIGEST = hashlib.sha256(DATA).hexdigest()
KEY = f"{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST}.jpg"


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")


def test_local_storage_is_a_storage(store: LocalStorage) -> None:
    door: Storage = store

    assert door.put(DATA, suffix=".jpg") == KEY


def test_put_stores_under_the_content_hash(store: LocalStorage, tmp_path: Path) -> None:
    key = store.put(DATA, suffix=".jpg")

    assert key == KEY == key_for(DATA, ".jpg")
    assert (tmp_path / "media" / KEY).read_bytes() == DATA
    assert store.read(key) == DATA
    assert store.exists(key)


def test_a_digest_the_caller_has_names_the_same_key(store: LocalStorage) -> None:
    assert store.put(DATA, suffix=".jpg", digest=DIGEST) == KEY == key_for(DATA, ".jpg", DIGEST)
    assert store.read(KEY) == DATA


def test_the_same_bytes_are_not_written_again(store: LocalStorage) -> None:
    key = store.put(DATA, suffix=".jpg")
    before = os.stat(store.path(key))

    assert store.put(DATA, suffix=".jpg") == key
    after = os.stat(store.path(key))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_one_content_under_two_suffixes_is_two_keys(store: LocalStorage) -> None:
    assert store.put(DATA, suffix=".jpg") != store.put(DATA, suffix=".webp")


def test_stored_files_are_readable_by_others_and_no_temp_file_is_left(
    store: LocalStorage,
) -> None:
    key = store.put(DATA, suffix=".png")

    assert stat.S_IMODE(os.stat(store.path(key)).st_mode) == 0o644
    assert os.listdir(store.path(key).parent) == [store.path(key).name]


def test_a_failed_write_leaves_nothing_under_the_key(
    store: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)

    with pytest.raises(OSError, match="disk full"):
        store.put(DATA, suffix=".jpg")
    assert not store.exists(KEY)
    assert os.listdir(store.path(KEY).parent) == []  # the temporary file is gone too


def test_a_reader_never_sees_a_partial_file(
    store: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Just before the rename, the whole content is in a file that is not under the key.
    seen: list[tuple[bool, bytes]] = []
    real_replace = os.replace

    def replace(source: str, target: Path) -> None:
        seen.append((Path(target).exists(), Path(source).read_bytes()))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)

    store.put(DATA, suffix=".jpg")
    assert seen == [(False, DATA)]


def test_delete_and_delete_again(store: LocalStorage) -> None:
    key = store.put(DATA, suffix=".gif")

    store.delete(key)
    store.delete(key)  # missing is fine

    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.read(key)


@pytest.mark.parametrize("suffix", [".jpeg", ".JPG", ".svg", ".html", "jpg", "", ".jpg/"])
def test_other_suffixes_are_refused(store: LocalStorage, suffix: str) -> None:
    with pytest.raises(ValueError, match="cannot store"):
        store.put(DATA, suffix=suffix)


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".avif", ".png", ".gif", ".csv"])
def test_every_allowed_suffix_is_stored(store: LocalStorage, suffix: str) -> None:
    key = store.put(DATA, suffix=suffix)

    assert key.endswith(suffix)
    assert is_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "..",
        f"../{KEY}",
        f"{KEY}/..",
        f"/{KEY}",
        f"/tmp/{KEY}",
        KEY.replace("/", "\\"),
        KEY + "\x00",
        KEY + "\n",
        KEY.upper(),
        KEY.replace(".jpg", ".JPG"),
        KEY.replace(".jpg", ".svg"),
        KEY.replace(".jpg", ""),
        f"00/00/{DIGEST}.jpg",  # fan-out that does not match the hash
        f"{DIGEST[:2]}/{DIGEST}.jpg",
        f"{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST[:-1]}.jpg",
        f"{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST}0.jpg",
        f"{DIGEST[:2]}//{DIGEST[2:4]}/{DIGEST}.jpg",
        f"{DIGEST[:2]}/./{DIGEST[2:4]}/{DIGEST}.jpg",
        f"{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST}.jpg.part",
        f"{DIGEST[:2]}/{DIGEST[2:4]}/.part-abc",
        f"{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST[:63]}\u0660.jpg",  # an Arabic-Indic digit
    ],
)
def test_only_keys_of_the_shape_put_makes_are_taken(store: LocalStorage, key: str) -> None:
    assert not is_key(key)
    for use in (store.path, store.exists, store.read, store.delete):
        with pytest.raises(ValueError, match="not a storage key"):
            use(key)


def test_a_path_is_under_the_root(store: LocalStorage, tmp_path: Path) -> None:
    assert store.path(KEY) == tmp_path / "media" / KEY


def test_the_digest_and_media_type_of_a_key() -> None:
    assert digest_of(KEY) == DIGEST
    assert media_type(KEY) == "image/jpeg"
    assert media_type(key_for(DATA, ".csv")) == "text/csv; charset=utf-8"
    with pytest.raises(ValueError, match="not a storage key"):
        digest_of("../etc/passwd")
