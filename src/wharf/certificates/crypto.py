"""Checking what a client sends for a certificate: the body, and its private key.

The seed accepted any text for both, and existing clients still send opaque values, so an
opaque body with an opaque key is accepted as it was. But a body that claims to be a PEM
certificate must be one, and then its key must be a private key that belongs to it: storing
a certificate with somebody else's key (or a typo) only fails later, at the TLS handshake.

The key arrives base64-encoded, so PEM and DER travel the same way through JSON. No error
here quotes the key or its base64 text: error details are logged and shown to clients.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_pem_private_key,
)

from wharf.core.errors import InvalidInput
from wharf.core.keys import CANONICAL_BASE64

MAX_KEY_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
MAX_RSA_BITS = 8192  # larger keys are in no CA's practice, and cost far more to handle
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_KEY_LOC: list[str | int] = ["body", "private_key"]
_BODY_LOC: list[str | int] = ["body", "body"]
# Base64 of MAX_KEY_BYTES is at most this long: longer text is refused before decoding it.
_MAX_KEY_TEXT = (MAX_KEY_BYTES + 2) // 3 * 4
_KEY_FORMATS = "PKCS#8, PKCS#1 or SEC1"


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    serial_number: str  # lower-case hex, no separators
    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    fingerprint_sha256: str  # lower-case hex of the sha256 of the DER


def decode_private_key(text: str) -> bytes:
    """The key bytes from strict base64; line breaks and spaces are allowed and dropped."""
    compact = "".join(text.split())
    if not compact:
        raise InvalidInput("private key is empty", loc=_KEY_LOC)
    if len(compact) > _MAX_KEY_TEXT:
        raise InvalidInput(f"private key is over {MAX_KEY_BYTES // 1024} KiB", loc=_KEY_LOC)
    try:
        if not CANONICAL_BASE64.fullmatch(compact):
            raise ValueError("not canonical base64")
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        hint = " (send the PEM file base64-encoded, not as text)" if "-----" in compact else ""
        raise InvalidInput(f"private key is not valid base64{hint}", loc=_KEY_LOC) from None
    if not raw:
        raise InvalidInput("private key is empty", loc=_KEY_LOC)
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidInput(f"private key is over {MAX_KEY_BYTES // 1024} KiB", loc=_KEY_LOC)
    return raw


def parse_certificate(body: str) -> CertificateInfo | None:
    """What a PEM certificate body says about itself; None for an opaque body."""
    loaded = _load_certificate(body)
    return None if loaded is None else loaded[1]


def load_private_key(raw: bytes) -> PrivateKeyTypes | None:
    """The private key in PEM or DER (PKCS#8, PKCS#1, SEC1); None for bytes that are neither.

    Bytes that claim PEM must parse; DER has no marker to claim anything by, so bytes DER
    cannot parse are taken as an opaque key, as the seed stored them.
    """
    pem = raw.lstrip().startswith(b"-----BEGIN")
    try:
        # cryptography's RSA validation tests the primes, which costs 50 ms for a 2048-bit key
        # and seconds for larger ones, on the request's thread: skipped, and `_sound_rsa`
        # checks instead, in microseconds, that the parts belong together.
        if pem:
            key = load_pem_private_key(raw, password=None, unsafe_skip_rsa_key_validation=True)
        else:
            key = load_der_private_key(raw, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        # cryptography's way of saying "this key is encrypted and no password was given".
        raise InvalidInput(
            "an encrypted private key cannot be checked: send it unencrypted; Wharf "
            "encrypts it at rest",
            loc=_KEY_LOC,
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if pem:
            raise InvalidInput(
                f"not a PEM private key ({_KEY_FORMATS}) of a supported type "
                "(RSA, EC, Ed25519, Ed448)",
                loc=_KEY_LOC,
            ) from None
        return None
    if isinstance(key, rsa.RSAPrivateKey):
        _sound_rsa(key)
    return key


def _sound_rsa(key: rsa.RSAPrivateKey) -> None:
    """An RSA key's parts must fit together (n = pq, d inverts e): what makes it the private
    half of its public key. Primality is not tested; a key that passes this decrypts what
    its public key encrypts, which is all `key_matches` promises."""
    if key.key_size > MAX_RSA_BITS:
        raise InvalidInput(
            f"an RSA key of {key.key_size} bits is larger than the {MAX_RSA_BITS} bits accepted",
            loc=_KEY_LOC,
        )
    numbers = key.private_numbers()
    p, q, d, n, e = (
        numbers.p,
        numbers.q,
        numbers.d,
        numbers.public_numbers.n,
        numbers.public_numbers.e,
    )
    lcm = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    if p * q != n or p < 3 or q < 3 or (d * e) % lcm != 1:
        raise InvalidInput(
            "not a valid RSA private key: its parts do not fit together", loc=_KEY_LOC
        )


def check_certificate(
    body: str, private_key: str
) -> tuple[bytes, CertificateInfo | None, bool | None]:
    """Validate a certificate body and its key: (raw key bytes, info, key_matches).

    key_matches is None when the body is opaque: there is nothing to match the key against.
    """
    loaded = _load_certificate(body)
    raw = decode_private_key(private_key)
    # Loaded even for an opaque body: a key claiming PEM, or encrypted, is refused either way.
    key = load_private_key(raw)
    if loaded is None:
        return raw, None, None
    certificate, info = loaded
    if key is None:
        raise InvalidInput(
            f"private key is not a PEM or DER private key ({_KEY_FORMATS})", loc=_KEY_LOC
        )
    if not _same_public_key(certificate, key):
        raise InvalidInput("private key does not match the certificate", loc=_KEY_LOC)
    return raw, info, True


def certificate_aad(certificate_id: int, user_id: int) -> bytes:
    """The associated data a certificate's key is sealed with: it opens on this row only."""
    return f"wharf:certificate:{certificate_id}:user:{user_id}".encode()


def _load_certificate(body: str) -> tuple[x509.Certificate, CertificateInfo] | None:
    encoded = body.encode("utf-8")
    if len(encoded) > MAX_BODY_BYTES:
        raise InvalidInput(f"certificate body is over {MAX_BODY_BYTES // 1024} KiB", loc=_BODY_LOC)
    if PEM_CERTIFICATE not in body:
        return None
    try:
        # The first certificate of a chain is the leaf, by convention and in every server.
        certificate = x509.load_pem_x509_certificate(encoded)
        info = _info(certificate)  # fields parse lazily: a bad name or date must fail here
    except ValueError:
        raise InvalidInput(
            "body looks like a PEM certificate but is not a valid X.509 certificate",
            loc=_BODY_LOC,
        ) from None
    return certificate, info


def _info(certificate: x509.Certificate) -> CertificateInfo:
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial_number=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
    )


def _same_public_key(certificate: x509.Certificate, key: PrivateKeyTypes) -> bool:
    # SubjectPublicKeyInfo DER is one canonical encoding for every key type: equal bytes,
    # same key, with no per-algorithm comparison to get wrong.
    try:
        public = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return public.public_bytes(*spki) == key.public_key().public_bytes(*spki)
