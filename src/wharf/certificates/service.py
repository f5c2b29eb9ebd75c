"""Rules and queries for certificates: ownership, the encrypted key, activation and its
notification."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    SQLColumnExpression,
    column,
    delete,
    insert,
    select,
    table,
    update,
)

from wharf.certificates import crypto
from wharf.certificates.models import Certificate
from wharf.core import webhooks
from wharf.core.data import crud, listing
from wharf.core.data.db import utcnow
from wharf.core.data.pagination import Page
from wharf.core.errors import NotFound
from wharf.core.http.concurrency import Precondition
from wharf.core.keys import Keyring
from wharf.core.rewrap import RewrapReport, declare_sealed, rewrap
from wharf.core.security import Principal

ACTIVATED, DEACTIVATED = "certificate.activated", "certificate.deactivated"
webhooks.declare_events(ACTIVATED, DEACTIVATED)

COLUMNS = (
    Certificate.id,
    Certificate.user_id,
    Certificate.active,
    Certificate.body,
    Certificate.subject,
    Certificate.issuer,
    Certificate.serial_number,
    Certificate.not_before,
    Certificate.not_after,
    Certificate.fingerprint_sha256,
    Certificate.key_matches,
    Certificate.version,
    Certificate.created_at,
    Certificate.updated_at,
)
ORDERING = {
    "id": Certificate.id,
    "created_at": Certificate.created_at,
    "not_after": Certificate.not_after,
}
# For the list query (core.data.listing); items are rendered under their user's path.
CERTIFICATES = crud.Resource(
    Certificate,
    "Certificate",
    "/api/v1/certificates",
    COLUMNS,
    ordering=ORDERING,
    # Nullable text columns are searched like any other (NULL matches nothing).
    search=cast(
        "tuple[SQLColumnExpression[str], ...]",
        (Certificate.subject, Certificate.issuer, Certificate.body),
    ),
)
PRIVATE_KEYS = declare_sealed(
    Certificate.__table__,
    "key_id",
    "private_key_sealed",
    lambda row: crypto.certificate_aad(row.id, row.user_id),
)
# The accounts domain's table, by name only: a cross-domain link is a foreign-key id.
_users = table("users", column("id"))
Rows = tuple[list[dict[str, Any]], int]


def _owner(conn: Connection, viewer: Principal, user_id: int, *, reading: bool = False) -> None:
    """The user path exists only for that user and admins: 404 for anyone else, so neither
    users nor their certificates can be probed."""
    if viewer.user_id != user_id and not viewer.is_admin:
        raise NotFound(f"No user {user_id}.")
    if reading and viewer.user_id == user_id:
        return  # a read by the user themselves: their token was just resolved against the row
    if conn.execute(select(_users.c.id).where(_users.c.id == user_id)).first() is None:
        raise NotFound(f"No user {user_id}.")


def _fetch(
    conn: Connection, user_id: int, certificate_id: int, *, lock: bool = False
) -> dict[str, Any]:
    query = select(*COLUMNS).where(Certificate.id == certificate_id, Certificate.user_id == user_id)
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    if row is None:
        raise NotFound(f"No certificate {certificate_id}.")
    return dict(row)


def create_certificate(
    conn: Connection,
    *,
    keyring: Keyring,
    viewer: Principal,
    user_id: int,
    private_key: str,
    body: str,
    active: bool,
) -> dict[str, Any]:
    _owner(conn, viewer, user_id)
    raw_key, info, matches = crypto.check_certificate(body, private_key)
    now = utcnow()
    parsed = (
        {}
        if info is None
        else {
            "subject": info.subject,
            "issuer": info.issuer,
            "serial_number": info.serial_number,
            "not_before": info.not_before,
            "not_after": info.not_after,
            "fingerprint_sha256": info.fingerprint_sha256,
        }
    )
    # The associated data binds the ciphertext to the row's id, known once it is inserted.
    certificate_id: int = conn.execute(
        insert(Certificate)
        .values(
            user_id=user_id,
            body=body,
            active=active,
            key_id="",
            private_key_sealed=b"",
            key_matches=matches,
            version=1,
            created_at=now,
            updated_at=now,
            **parsed,
        )
        .returning(Certificate.id)
    ).scalar_one()
    sealed = keyring.seal(raw_key, aad=crypto.certificate_aad(certificate_id, user_id))
    conn.execute(
        update(Certificate)
        .where(Certificate.id == certificate_id)
        .values(key_id=sealed.key_id, private_key_sealed=sealed.blob)
    )
    return _fetch(conn, user_id, certificate_id)


def list_certificates(
    conn: Connection,
    *,
    viewer: Principal,
    user_id: int,
    active: bool | None,
    expiring_within_days: int | None,
    search: str | None,
    ordering: str | None,
    page: Page,
) -> Rows:
    _owner(conn, viewer, user_id, reading=True)
    equals: dict[str, Any] = {"user_id": user_id}
    if active is not None:
        equals["active"] = active
    ranges = {}
    if expiring_within_days is not None:
        now = utcnow()
        ranges["not_after"] = (now, now + timedelta(days=expiring_within_days))
    return listing.page(
        conn,
        CERTIFICATES,
        equals=equals,
        ranges=ranges,
        search=search,
        ordering=ordering,
        page=page,
    )


def get_certificate(
    conn: Connection, *, viewer: Principal, user_id: int, certificate_id: int
) -> dict[str, Any]:
    _owner(conn, viewer, user_id, reading=True)
    return _fetch(conn, user_id, certificate_id)


def delete_certificate(
    conn: Connection,
    *,
    viewer: Principal,
    user_id: int,
    certificate_id: int,
    expected: Precondition | None,
) -> None:
    current = get_certificate(conn, viewer=viewer, user_id=user_id, certificate_id=certificate_id)
    if expected is not None and current["version"] != expected.version:
        raise expected.stale(current["version"], f"Certificate {certificate_id}")
    conn.execute(delete(Certificate).where(Certificate.id == certificate_id))


def set_active(
    conn: Connection,
    *,
    viewer: Principal,
    user_id: int,
    certificate_id: int,
    active: bool,
    notify: bool,
    expected: Precondition | None,
) -> tuple[dict[str, Any], bool]:
    """Activate or deactivate; with `notify`, the event is written in this transaction (the
    outbox), so it is sent exactly when the change commits. Setting the state a certificate
    already has changes and queues nothing, so a retry is safe. Returns (row, queued): queued
    is true when at least one delivery was queued."""
    _owner(conn, viewer, user_id)
    # Locked until commit (PostgreSQL; SQLite's writers queue anyway): two identical requests
    # at once both see the outcome of the first, not a version conflict.
    current = _fetch(conn, user_id, certificate_id, lock=True)
    if expected is not None and current["version"] != expected.version:
        raise expected.stale(current["version"], f"Certificate {certificate_id}")
    if current["active"] == active:
        return current, False
    changed = conn.execute(
        update(Certificate)
        .where(Certificate.id == certificate_id, Certificate.version == current["version"])
        .values(active=active, version=Certificate.version + 1, updated_at=utcnow())
    ).rowcount
    if not changed:  # a concurrent change won between our read and our write
        raise Precondition(current["version"], from_header=expected is not None).stale(
            current["version"] + 1, f"Certificate {certificate_id}"
        )
    queued = 0
    if notify:
        # The event is written either way; `queued` is true only when some endpoint will be
        # sent it, which is what the 202 promises.
        queued = webhooks.publish(
            conn,
            ACTIVATED if active else DEACTIVATED,
            {"id": certificate_id, "user_id": user_id, "active": active},
        )
    return _fetch(conn, user_id, certificate_id), queued > 0


def rewrap_keys(engine: Engine, keyring: Keyring, *, batch: int = 500) -> RewrapReport:
    """Re-encrypt every stored private key under the keyring's current key."""
    return rewrap(engine, keyring, PRIVATE_KEYS, batch=batch)
