"""Test PKI: keys, self-signed certificates and the base64 a client sends as `private_key`.

Keys are cached per (type, index): RSA generation dominates a test run otherwise. Ask for
another index to get a different key of the same type (a mismatched key).
"""

from __future__ import annotations

import base64
import functools
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    KeySerializationEncryption,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

KeyType = Literal["rsa", "ec", "ed25519"]
KeyFormat = Literal["pkcs8-pem", "pkcs8-der", "pkcs1-pem", "pkcs1-der", "sec1-pem", "sec1-der"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

# Every format each key type can be written in (PKCS#1 is RSA's own, SEC1 is EC's own).
FORMATS: dict[KeyType, tuple[KeyFormat, ...]] = {
    "rsa": ("pkcs8-pem", "pkcs8-der", "pkcs1-pem", "pkcs1-der"),
    "ec": ("pkcs8-pem", "pkcs8-der", "sec1-pem", "sec1-der"),
    "ed25519": ("pkcs8-pem", "pkcs8-der"),
}
MATRIX: list[tuple[KeyType, KeyFormat]] = [
    (key_type, fmt) for key_type, fmts in FORMATS.items() for fmt in fmts
]


@functools.cache
def make_key(key_type: KeyType = "ec", index: int = 0) -> PrivateKey:
    """A private key, the same one for the same (type, index) within a run."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def make_certificate(
    key_type: KeyType = "ec",
    days: int = 365,
    common_name: str = "test",
    *,
    key: PrivateKey | None = None,
    serial_number: int | None = None,
) -> tuple[str, PrivateKey]:
    """A self-signed PEM certificate valid for `days` from now (negative: already expired)."""
    key = key if key is not None else make_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC).replace(microsecond=0)
    not_after = now + timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial_number if serial_number is not None else x509.random_serial_number())
        .not_valid_before(min(now, not_after) - timedelta(days=1))
        .not_valid_after(not_after)
    )
    # Ed25519 signs with its own hash; passing one is an error.
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    certificate = builder.sign(key, algorithm)
    return certificate.public_bytes(Encoding.PEM).decode(), key


def key_bytes(key: PrivateKey, fmt: KeyFormat, *, password: bytes | None = None) -> bytes:
    """The key written in `fmt`; with a password, encrypted (PEM, or PKCS#8 DER)."""
    family, _, encoding_name = fmt.partition("-")
    if family == "pkcs1" and not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("PKCS#1 holds RSA keys only")
    if family == "sec1" and not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("SEC1 holds EC keys only")
    encoding = Encoding.PEM if encoding_name == "pem" else Encoding.DER
    # TraditionalOpenSSL is PKCS#1 for an RSA key and SEC1 for an EC key.
    private_format = PrivateFormat.PKCS8 if family == "pkcs8" else PrivateFormat.TraditionalOpenSSL
    encryption: KeySerializationEncryption = (
        NoEncryption() if password is None else BestAvailableEncryption(password)
    )
    return key.private_bytes(encoding, private_format, encryption)


def encode_key(key: PrivateKey, fmt: KeyFormat, *, password: bytes | None = None) -> str:
    """The base64 text a client sends as `private_key`."""
    return b64(key_bytes(key, fmt, password=password))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
