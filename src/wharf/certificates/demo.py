"""Demo certificates for `wharf demo`: a few real self-signed ones, made on the spot."""

from __future__ import annotations

import base64
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection, func, select

from wharf.certificates import service
from wharf.certificates.models import Certificate
from wharf.core.data.db import utcnow
from wharf.core.keys import Keyring
from wharf.core.security import Principal

# (common name, valid for days, active)
DEMO = (
    ("api.example.com", 365, True),
    ("legacy.example.com", 20, True),
    ("staging.example.com", 90, False),
)


def _self_signed(common_name: str, days: int) -> tuple[str, str]:
    """A PEM certificate and its EC key as base64 PKCS#8 DER, as a client would send it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return pem, base64.b64encode(der).decode()


def load(conn: Connection, *, keyring: Keyring, owner: int) -> bool:
    """Give `owner` the demo certificates once; False when they already have some."""
    count = conn.execute(
        select(func.count()).select_from(Certificate).where(Certificate.user_id == owner)
    ).scalar_one()
    if count:
        return False
    me = Principal(user_id=owner, role="admin", token_id=0, scopes=frozenset({"write"}))
    for common_name, days, active in DEMO:
        body, key = _self_signed(common_name, days)
        service.create_certificate(
            conn,
            keyring=keyring,
            viewer=me,
            user_id=owner,
            private_key=key,
            body=body,
            active=active,
        )
    return True
