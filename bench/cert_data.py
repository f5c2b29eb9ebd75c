"""What the certificate benchmarks store: real keys, self-signed PEM certificates, a keyring,
and users with tokens, written through the certificates service as the API would write them."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection

from wharf.accounts import service as accounts
from wharf.certificates import service as certificates
from wharf.core.keys import Keyring
from wharf.core.security import Principal


def keyring_env() -> str:
    """A WHARF_KEY_ENCRYPTION_KEYS value with one fresh key."""
    return f"kbench:{base64.b64encode(os.urandom(32)).decode()}"


def pkcs8_der(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: ec.EllipticCurvePrivateKey, name: str, days: int) -> str:
    """A PEM certificate for `key`, valid from yesterday for `days` days."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class Account:
    user_id: int
    token: str


def account(conn: Connection, label: str, *, role: str, scopes: set[str]) -> Account:
    user = accounts.create_user(
        conn,
        email=f"{label}-{time.time_ns()}@example.com",
        name=label,
        password="benchmark!",
        role=role,
    )
    token = accounts.issue_token(
        conn,
        user_id=user["id"],
        name=label,
        scopes=frozenset(scopes),
        lifetime=timedelta(hours=4),
    )
    return Account(int(user["id"]), token)


def seed_certificates(
    conn: Connection, keyring: Keyring, owner: Account, *, count: int, inactive_every: int = 0
) -> list[int]:
    """`count` certificates (EC P-256, PEM) of `owner`; every `inactive_every`-th is inactive
    (all of them with 1, none with 0). Their ids, in order."""
    viewer = Principal(owner.user_id, "user", 0, frozenset({"read", "write"}))
    ids: list[int] = []
    for i in range(count):
        key = ec_key()
        row = certificates.create_certificate(
            conn,
            keyring=keyring,
            viewer=viewer,
            user_id=owner.user_id,
            private_key=base64.b64encode(pkcs8_der(key)).decode(),
            body=self_signed(key, f"bench-{i}.example.com", 30 + i % 365),
            active=not (inactive_every and i % inactive_every == 0),
        )
        ids.append(int(row["id"]))
    return ids
