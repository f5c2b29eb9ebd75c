"""Certificate bodies and private keys as clients send them: every format, every refusal."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from tests.certificates.pki import (
    MATRIX,
    KeyFormat,
    KeyType,
    b64,
    encode_key,
    key_bytes,
    make_certificate,
    make_key,
)
from wharf.certificates import crypto
from wharf.certificates.crypto import (
    MAX_BODY_BYTES,
    MAX_KEY_BYTES,
    certificate_aad,
    check_certificate,
    decode_private_key,
    load_private_key,
    parse_certificate,
)
from wharf.core.errors import InvalidInput

KEY_LOC = ["body", "private_key"]
BODY_LOC = ["body", "body"]


def loc(exc: InvalidInput) -> object:
    return exc.extra["errors"][0]["loc"]


@pytest.mark.parametrize(("key_type", "fmt"), MATRIX)
def test_every_format_parses_and_matches(key_type: KeyType, fmt: KeyFormat) -> None:
    body, key = make_certificate(key_type)
    private_key = encode_key(key, fmt)

    raw, info, matches = check_certificate(body, private_key)

    assert raw == key_bytes(key, fmt)
    assert info is not None
    assert matches is True
    assert type(load_private_key(raw)) is type(key)


@pytest.mark.parametrize("key_type", ["rsa", "ec", "ed25519"])
def test_a_key_of_the_same_type_that_is_not_the_certificates_is_refused(
    key_type: KeyType,
) -> None:
    body, key = make_certificate(key_type)
    other = make_key(key_type, 1)
    assert other is not key

    with pytest.raises(InvalidInput) as caught:
        check_certificate(body, encode_key(other, "pkcs8-pem"))

    assert caught.value.status == 422
    assert caught.value.detail == "private key does not match the certificate"
    assert loc(caught.value) == KEY_LOC


def test_a_key_of_another_type_is_refused() -> None:
    body, _ = make_certificate("ec")
    with pytest.raises(InvalidInput, match="does not match"):
        check_certificate(body, encode_key(make_key("ed25519"), "pkcs8-der"))


def test_an_opaque_body_with_an_opaque_key_is_accepted_as_the_seed_did() -> None:
    raw, info, matches = check_certificate("opaque certificate text", b64(b"opaque key"))
    assert (raw, info, matches) == (b"opaque key", None, None)


def test_an_opaque_body_with_a_real_key_is_accepted_unmatched() -> None:
    key = make_key("ec")
    raw, info, matches = check_certificate("opaque", encode_key(key, "sec1-der"))
    assert raw == key_bytes(key, "sec1-der")
    assert (info, matches) == (None, None)


def test_a_pem_body_with_an_opaque_key_is_refused() -> None:
    body, _ = make_certificate()
    with pytest.raises(InvalidInput, match="not a PEM or DER private key") as caught:
        check_certificate(body, b64(b"opaque key"))
    assert loc(caught.value) == KEY_LOC


def test_parsed_fields() -> None:
    body, _ = make_certificate("rsa", days=30, common_name="shop.example", serial_number=0xABC123)

    info = parse_certificate(body)

    assert info is not None
    certificate = x509.load_pem_x509_certificate(body.encode())
    assert info.subject == info.issuer == "CN=shop.example"
    assert info.serial_number == "abc123"
    assert info.not_before.tzinfo is UTC
    assert info.not_after.tzinfo is UTC
    assert info.not_after - info.not_before == timedelta(days=31)
    assert abs(info.not_after - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    der = certificate.public_bytes(Encoding.DER)
    assert info.fingerprint_sha256 == hashlib.sha256(der).hexdigest()


def test_an_expired_certificate_still_parses() -> None:
    # Whether to accept an expired certificate is the service's rule, not the parser's.
    info = parse_certificate(make_certificate(days=-3)[0])
    assert info is not None
    assert info.not_after < datetime.now(UTC)


def test_an_opaque_body_parses_to_none() -> None:
    assert parse_certificate("") is None
    assert parse_certificate("-----BEGIN SOMETHING ELSE-----") is None


@pytest.mark.parametrize(
    "body",
    [
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----",
    ],
)
def test_a_body_claiming_pem_must_be_a_certificate(body: str) -> None:
    with pytest.raises(InvalidInput, match=r"not a valid X\.509 certificate") as caught:
        parse_certificate(body)
    assert loc(caught.value) == BODY_LOC


def test_a_body_over_64_kib_is_refused_opaque_or_not() -> None:
    with pytest.raises(InvalidInput, match="over 64 KiB") as caught:
        check_certificate("x" * (MAX_BODY_BYTES + 1), b64(b"k"))
    assert loc(caught.value) == BODY_LOC
    # Counted in UTF-8 bytes, not characters.
    with pytest.raises(InvalidInput, match="over 64 KiB"):
        parse_certificate("é" * (MAX_BODY_BYTES // 2 + 1))
    assert parse_certificate("x" * MAX_BODY_BYTES) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" \n\t", "empty"),
        ("not base64!", "not valid base64"),
        ("QUJD=", "not valid base64"),
        ("QUJD====", "not valid base64"),
        ("QUI", "not valid base64"),
        ("QU JD\u00e9", "not valid base64"),
        ("-----BEGIN PRIVATE KEY-----", "base64-encoded, not as text"),
        ("A" * ((MAX_KEY_BYTES + 3) // 3 * 4), "over 16 KiB"),
        ("A" * 200_000, "over 16 KiB"),
    ],
)
def test_bad_key_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        decode_private_key(text)
    assert loc(caught.value) == KEY_LOC
    if text.strip():
        assert text not in caught.value.detail


def test_base64_may_be_wrapped_and_a_key_of_exactly_16_kib_is_taken() -> None:
    data = bytes(range(256)) * (MAX_KEY_BYTES // 256)
    wrapped = base64.encodebytes(data).decode()  # 76-column lines, as `base64` writes
    assert "\n" in wrapped
    assert decode_private_key(wrapped) == data


@pytest.mark.parametrize("fmt", ["pkcs8-pem", "sec1-pem", "pkcs8-der"])
def test_an_encrypted_key_is_refused_with_the_reason(fmt: KeyFormat) -> None:
    body, key = make_certificate("ec")
    private_key = encode_key(key, fmt, password=b"secret")
    with pytest.raises(InvalidInput, match="encrypted private key") as caught:
        check_certificate(body, private_key)
    assert "Wharf encrypts it at rest" in caught.value.detail
    assert loc(caught.value) == KEY_LOC
    # Refused with an opaque body too: it is plainly a key, and one Wharf could not use.
    with pytest.raises(InvalidInput, match="encrypted private key"):
        check_certificate("opaque", private_key)


@pytest.mark.parametrize(
    "raw",
    [
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"  \n-----BEGIN RSA PRIVATE KEY-----\ngarbage",
        b"-----BEGIN CERTIFICATE-----\n",
    ],
)
def test_bytes_claiming_pem_must_be_a_private_key(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="not a PEM private key") as caught:
        load_private_key(raw)
    assert loc(caught.value) == KEY_LOC
    with pytest.raises(InvalidInput, match="not a PEM private key"):
        check_certificate("opaque", b64(raw))


def test_bytes_der_cannot_parse_are_opaque() -> None:
    assert load_private_key(b"\x30\x03\x02\x01\x00") is None
    assert load_private_key(b"just some text") is None


def test_errors_never_quote_the_key() -> None:
    body, _ = make_certificate("rsa")
    pem = key_bytes(make_key("rsa", 1), "pkcs1-pem")
    private_key = b64(pem)
    with pytest.raises(InvalidInput) as caught:
        check_certificate(body, private_key)
    shown = repr(caught.value.extra) + caught.value.detail
    assert private_key[:40] not in shown
    assert pem.decode().splitlines()[1] not in shown


def test_certificate_aad_names_the_row_and_its_owner() -> None:
    assert certificate_aad(7, 3) == b"wharf:certificate:7:user:3"
    assert certificate_aad(7, 3) != certificate_aad(3, 7)


def test_an_rsa_key_over_the_size_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cap is 8192 bits; a lowered one stands in, as an 8200-bit key takes seconds to make.
    monkeypatch.setattr(crypto, "MAX_RSA_BITS", 1024)
    with pytest.raises(InvalidInput, match="2048 bits is larger than the 1024"):
        load_private_key(key_bytes(make_key("rsa"), "pkcs8-der"))


def test_an_rsa_key_whose_parts_do_not_fit_is_refused() -> None:
    key = make_key("rsa")
    assert isinstance(key, rsa.RSAPrivateKey)
    good = key.private_numbers()
    broken = rsa.RSAPrivateNumbers(
        p=good.p,
        q=good.q,
        d=good.d + 2,  # no longer the inverse of e
        dmp1=good.dmp1,
        dmq1=good.dmq1,
        iqmp=good.iqmp,
        public_numbers=good.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)
    with pytest.raises(InvalidInput, match="parts do not fit together"):
        load_private_key(key_bytes(broken, "pkcs8-der"))
