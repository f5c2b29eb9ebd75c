"""The keyring of key-encryption keys: what seals secrets Wharf must keep at rest.

Private keys and webhook secrets cannot be hashed like passwords: Wharf has to give them
back. They are stored sealed with AES-256-GCM under a key-encryption key that never enters
the database, so a leaked database or backup holds only ciphertext. The keys come from
`WHARF_KEY_ENCRYPTION_KEYS` or from the key file `var_dir/keys` (`wharf keys generate`).

- Every sealed value records the id of its key. Rotation puts a new current key in front
  and keeps the old ones, so older rows still open; a key is removed only once nothing is
  sealed under it. A missing id is reported as such (`UnknownKey`), not as corrupt data,
  because the fix is to add the key back.
- Every seal binds associated data (AAD) naming the row it belongs to, e.g.
  `wharf:certificate:7:user:3`. GCM authenticates it, so a ciphertext copied onto another
  row, or another user's, fails to open instead of handing over someone else's secret.
- Each seal draws a fresh random 96-bit nonce. GCM breaks if a nonce repeats under one key;
  random nonces stay safe far beyond the number of secrets Wharf will ever seal per key.

Nothing here logs; no error or repr carries key bytes or the text they came from. A key file
open to group or others is refused (`UnsafeKeyFile`, a `MissingKeys`), not used: a key
anyone on the host can read protects nothing, and refusing is how the operator finds out.
Rotation rewrites the file whole (its comments are not kept); two rotations racing on one
file can lose one new key, so rotate from one place. POSIX only (modes, fchmod, dir fsync).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wharf.core.config import Settings
from wharf.core.errors import ServiceUnavailable

KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_ENV = "WHARF_KEY_ENCRYPTION_KEYS"
# b64decode(validate=True) still takes stray padding ("QUJD="); a key must be canonical.
CANONICAL_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_FILE_HEADER = (
    "# Wharf key-encryption keys: one `id:base64` a line, the first one current.\n"
    "# Keep this file mode 0600 and out of backups of the database it protects.\n"
)


class MissingKeys(ServiceUnavailable):
    """No keyring can be loaded: nothing sealed can be read or written until one is."""

    title = "No encryption key"

    def __init__(self, path: Path, *, detail: str | None = None) -> None:
        self.path = path
        super().__init__(
            detail
            or f"No key-encryption key: set {_ENV} or run `wharf keys generate` "
            f"(which writes {path})."
        )


class UnsafeKeyFile(MissingKeys):
    """The key file exists but group or others have access to it, so it is not used."""

    title = "Key file is not private"

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(
            path,
            detail=f"The key file {path} is open to group or others (mode "
            f"{stat.S_IMODE(mode):04o}): run `chmod 600 {path}` and retry.",
        )


class InvalidKeyring(MissingKeys):
    """The keys are configured but malformed; `reason` never quotes the key text."""

    title = "Encryption keys are not valid"

    def __init__(self, path: Path, *, source: str, reason: str) -> None:
        super().__init__(path, detail=f"{source} is not a valid keyring: {reason}")


class UnknownKey(ServiceUnavailable):
    title = "Unknown encryption key"

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(
            f"Stored data is encrypted under key {key_id}, which is not in the keyring; add "
            f"that key back ({_ENV} or the key file) and retry."
        )


class DecryptFailed(ServiceUnavailable):
    # 503, not 500 or 4xx: the request was fine and the server is intact; the stored bytes
    # (or the keyring they were sealed with) are not, and an operator has to look.
    title = "Stored data cannot be decrypted"

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(
            f"Stored data sealed under key {key_id} failed its integrity check: it was "
            "altered, or it was sealed for another record."
        )


@dataclass(frozen=True)
class Sealed:
    """A sealed value: the id of its key, and the 12-byte nonce followed by ciphertext+tag."""

    key_id: str
    blob: bytes


class Keyring:
    """Key-encryption keys by id; the first one given is current and seals new values."""

    __slots__ = ("_ciphers", "current_id")
    current_id: str

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for position, (key_id, key) in enumerate(keys, start=1):
            if not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"key {position}: an id must match [A-Za-z0-9_-]{{1,32}}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id} is {len(key)} bytes, not {KEY_BYTES}")
            if key_id in ciphers:
                raise ValueError(f"key id {key_id} appears twice")
            # Only the AESGCM objects are kept: no attribute holds the raw bytes.
            ciphers[key_id] = AESGCM(key)
        self._ciphers = ciphers
        self.current_id = keys[0][0]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """`id:base64,id:base64`, or one `id:base64` a line; `#` comments and blanks skipped."""
        return cls(_parse_entries(text))

    @classmethod
    def load(cls, settings: Settings) -> Keyring:
        """The keys of `WHARF_KEY_ENCRYPTION_KEYS` if set (and not blank), else the key file."""
        path = key_file(settings)
        configured = settings.key_encryption_keys
        # A blank variable (`WHARF_KEY_ENCRYPTION_KEYS=` in a compose file) means unset.
        if configured is not None and configured.get_secret_value().strip():
            try:
                return cls.parse(configured.get_secret_value())
            except ValueError as exc:
                raise InvalidKeyring(path, source=_ENV, reason=str(exc)) from None
        text = _read_private(path)
        try:
            return cls.parse(text)
        except ValueError as exc:
            raise InvalidKeyring(path, source=f"The key file {path}", reason=str(exc)) from None

    def ids(self) -> list[str]:
        return list(self._ciphers)

    def seal(self, plaintext: bytes, *, aad: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._ciphers[self.current_id].encrypt(nonce, plaintext, aad)
        return Sealed(self.current_id, blob)

    def open(self, sealed: Sealed, *, aad: bytes) -> bytes:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise UnknownKey(sealed.key_id)
        if len(sealed.blob) < NONCE_BYTES + _TAG_BYTES:
            raise DecryptFailed(sealed.key_id)
        nonce, body = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, body, aad)
        except InvalidTag:
            raise DecryptFailed(sealed.key_id) from None

    def __repr__(self) -> str:
        return f"Keyring(current_id={self.current_id!r}, ids={self.ids()!r})"


class KeySource:
    """The keyring a running process uses, re-read when the key file changes.

    `wharf keys rotate` rewrites the file (a new inode, via os.replace), so a server notices
    at its next seal or open with one stat, and new values are sealed under the new key at
    once, as the command promises; otherwise a rewrap would miss what the server keeps
    sealing under the old key. Keys from WHARF_KEY_ENCRYPTION_KEYS change with a restart.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = key_file(settings)
        configured = settings.key_encryption_keys
        self.from_file = configured is None or not configured.get_secret_value().strip()
        self._stamp = self._stat()
        self._keyring = Keyring.load(settings)  # MissingKeys here refuses the start

    def _stat(self) -> tuple[int, int, int] | None:
        if not self.from_file:
            return None
        try:
            found = self.path.stat()
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    def keyring(self) -> Keyring:
        if self.from_file:
            stamp = self._stat()
            if stamp is not None and stamp != self._stamp:
                # A file being replaced is whole (os.replace), so a failed read is an
                # operator's error: MissingKeys answers 503 until it is mended.
                self._keyring = Keyring.load(self.settings)
                self._stamp = stamp
        return self._keyring


def key_file(settings: Settings) -> Path:
    return settings.var_dir / "keys"


def new_key_id() -> str:
    """`k20250101-1a2b`: the date says how old a key is, the suffix keeps same-day ids apart."""
    return f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"


def generate_key_file(path: Path) -> str:
    """Write a new key file holding one fresh key; its id is returned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key_id = new_key_id()
    # O_EXCL: never overwrite keys that sealed data (FileExistsError), nor follow a planted
    # symlink; 0600 from the first byte, so the key is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # the umask only removes bits; be exact anyway
            handle.write(_render([(key_id, os.urandom(KEY_BYTES))]))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # a half-written file would block the next attempt
        raise
    return key_id


def rotate_key_file(path: Path) -> str:
    """Put a fresh key in front of the file's keys, making it current; its id is returned."""
    entries = _parse_entries(path.read_text(encoding="utf-8"))
    taken = {key_id for key_id, _ in entries}
    key_id = new_key_id()
    while key_id in taken:  # same day, same 16 random bits: vanishingly rare, but cheap
        key_id = new_key_id()
    _replace(path, [(key_id, os.urandom(KEY_BYTES)), *entries])
    return key_id


def remove_key(path: Path, key_id: str) -> None:
    """Drop a retired key. Only once nothing is sealed under it: those values are lost."""
    entries = _parse_entries(path.read_text(encoding="utf-8"))
    if entries[0][0] == key_id:
        raise ValueError(f"key {key_id} is current: rotate first, then remove it")
    remaining = [entry for entry in entries if entry[0] != key_id]
    if len(remaining) == len(entries):
        raise ValueError(f"no key {key_id} in {path}")
    _replace(path, remaining)


def _parse_entries(text: str) -> list[tuple[str, bytes]]:
    # Messages name an entry by position, never by content: a mangled entry may be a key.
    entries: list[tuple[str, bytes]] = []
    position = 0
    for line in text.splitlines():
        # Neither ids nor base64 contain '#', so everything after one is a comment.
        for item in line.split("#", 1)[0].split(","):
            item = item.strip()
            if not item:
                continue
            position += 1
            key_id, sep, encoded = item.partition(":")
            key_id = key_id.strip()
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise ValueError(
                    f"entry {position} is not `id:base64` with an id of [A-Za-z0-9_-]{{1,32}}"
                )
            encoded = encoded.strip()
            try:
                if not CANONICAL_BASE64.fullmatch(encoded):
                    raise ValueError("not canonical base64")
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"key {key_id} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id} is {len(key)} bytes, not {KEY_BYTES}")
            entries.append((key_id, key))
    if not entries:
        raise ValueError("no keys found")
    # Validate ids the same way a Keyring would, so a file we rewrite is always loadable.
    Keyring(entries)
    return entries


def _read_private(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise MissingKeys(path) from None
    except OSError as exc:
        detail = f"The key file {path} cannot be read: {exc.strerror}."
        raise MissingKeys(path, detail=detail) from None
    with os.fdopen(fd, "rb") as handle:
        # fstat on the open file, not stat on the name: the file checked is the file read.
        mode = os.fstat(handle.fileno()).st_mode
        if mode & 0o077:
            raise UnsafeKeyFile(path, mode)
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        reason = "it is not UTF-8 text"
        raise InvalidKeyring(path, source=f"The key file {path}", reason=reason) from None


def _render(entries: list[tuple[str, bytes]]) -> str:
    lines = (f"{key_id}:{base64.b64encode(key).decode()}\n" for key_id, key in entries)
    return _FILE_HEADER + "".join(lines)


def _replace(path: Path, entries: list[tuple[str, bytes]]) -> None:
    # Write a private temporary file beside the target, then rename over it: a crash leaves
    # the old file or the new one, never half of one. mkstemp creates it 0600 with O_EXCL.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_render(entries))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
