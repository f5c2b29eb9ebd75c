"""Stored files named by their content: car images, their thumbnails, uploaded CSVs.

A key is `aa/bb/<sha256 hex><suffix>`: the hash of the bytes, with two levels of fan-out
directories from its first four digits (a directory of a million files is slow to list and
to back up). A name never changes its content, so a file is written once, readers and caches
may keep it forever (`core.http.media` serves it `immutable`), and storing the same bytes
twice stores them once.

`Storage` is the door to S3-style object storage (the catalog seed's roadmap: S3 behind a
CDN); `LocalStorage`, a directory on the local filesystem, is the one built now. Keys reach
`LocalStorage.path` from URLs, so it accepts exactly the shape `put` makes and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

# What may be stored, and what each is served as.
MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".png": "image/png",
    ".gif": "image/gif",
    ".csv": "text/csv; charset=utf-8",
}
SUFFIXES = frozenset(MEDIA_TYPES)
# Lowercase hex only, the fan-out directories equal to the hash's first digits, one of the
# suffixes: no `..`, no separators of another OS, no absolute path, no NUL, no case variant
# (which would be a second name for one file on a case-insensitive disk).
_SUFFIX_PATTERN = "|".join(re.escape(suffix) for suffix in sorted(SUFFIXES))
_KEY = re.compile(rf"([0-9a-f]{{2}})/([0-9a-f]{{2}})/(\1\2[0-9a-f]{{60}})({_SUFFIX_PATTERN})")
_TEMP_PREFIX = ".part-"  # never a key's shape, so a crashed write is never served


class Storage(Protocol):
    """Where content-addressed files live. Keys are what `put` returned."""

    def put(self, data: bytes, *, suffix: str, digest: str | None = None) -> str:
        """Store `data` under its content-hashed key and return the key. Idempotent: the same
        bytes give the same key, and a key already stored is not written again. `digest` is
        the caller's sha256 (hex) of these very bytes, when it has one: not hashed again."""
        ...

    def delete(self, key: str) -> None:
        """Remove the file; a key that is not stored is fine."""
        ...

    def exists(self, key: str) -> bool: ...

    def read(self, key: str) -> bytes:
        """The stored bytes; FileNotFoundError when the key is not stored."""
        ...


def key_for(data: bytes, suffix: str, digest: str | None = None) -> str:
    """The key `put` stores `data` under (`digest`: its sha256, if already known)."""
    if suffix not in SUFFIXES:
        allowed = ", ".join(sorted(SUFFIXES))
        raise ValueError(f"cannot store a {suffix!r} file; the suffixes are {allowed}")
    if digest is None:
        digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"


def is_key(key: str) -> bool:
    """Whether `key` has exactly the shape `put` makes."""
    return _KEY.fullmatch(key) is not None


def digest_of(key: str) -> str:
    """The sha256 (hex) a well-formed key names; ValueError for any other string."""
    found = _KEY.fullmatch(key)
    if found is None:
        raise ValueError("not a storage key")
    return found.group(3)


def media_type(key: str) -> str:
    """The Content-Type a well-formed key is served with."""
    found = _KEY.fullmatch(key)
    if found is None:
        raise ValueError("not a storage key")
    return MEDIA_TYPES[found.group(4)]


class LocalStorage:
    """Files under `root`, one per key, written atomically.

    A write goes to a temporary file in the key's own directory (so the rename cannot cross
    filesystems), is flushed to disk, then renamed over the key with `os.replace`: a reader
    sees the whole file or none, and a crash leaves at most a `.part-` file, never a short
    file under a real key, which caches would then keep forever.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Where `key` lives. ValueError for anything that is not exactly a key `put` makes:
        keys arrive from URLs, and nothing else may name a path under (or above) the root."""
        if not isinstance(key, str) or _KEY.fullmatch(key) is None:
            raise ValueError("not a storage key")
        return self.root / key

    def put(self, data: bytes, *, suffix: str, digest: str | None = None) -> str:
        key = key_for(data, suffix, digest)
        target = self.path(key)
        if target.is_file():
            return key  # same name, same bytes: nothing to write
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                # Before the rename: otherwise a crash can leave the new name pointing at a
                # file whose blocks never reached the disk (an empty image, cached forever).
                os.fsync(file.fileno())
                # mkstemp makes the file private (0600); stored files are public content that
                # a web server or a backup job running as another user may need to read.
                os.fchmod(file.fileno(), 0o644)
            # Two writers of the same bytes race harmlessly: both rename identical content.
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return key

    def delete(self, key: str) -> None:
        # The fan-out directories stay: empty ones cost nothing and are likely reused.
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()
