"""What sealing and opening one private key costs (`Keyring.seal` / `Keyring.open`), in µs.

timeit-style: each figure is the median, over several repeats, of the mean time per call in
a loop long enough to last ~0.2 s. Beside it, measured in the same run over the same bytes,
hashlib.sha256 (a baseline that moves with the machine) and AESGCM.encrypt/decrypt alone
(what the keyring adds around the cipher: a fresh nonce, the key lookup, the Sealed value).

    .venv/bin/python -m bench.keyring_cost [--repeat 7] [--record]
    .venv/bin/python -m bench.run --only keys [--record]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.cert_data import ec_key, pkcs8_der, rsa_key
from bench.run import emit
from wharf.certificates.crypto import certificate_aad
from wharf.core.keys import NONCE_BYTES, Keyring


def per_call_us(fn: Callable[[], object], repeat: int) -> float:
    """The median over `repeat` runs of the mean µs per call."""
    timer = timeit.Timer(fn)
    number, elapsed = timer.autorange()  # at least 0.2 s per run
    number = max(number, int(number * 0.2 / max(elapsed, 1e-9)))
    runs = timer.repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e6


def measure(data: bytes, repeat: int) -> dict[str, float]:
    key = os.urandom(32)
    ring = Keyring([("kbench", key)])
    aad = certificate_aad(123456, 7890)  # the AAD a certificate's key is sealed with
    sealed = ring.seal(data, aad=aad)
    assert ring.open(sealed, aad=aad) == data
    cipher = AESGCM(key)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = cipher.encrypt(nonce, data, aad)
    return {
        "seal": per_call_us(lambda: ring.seal(data, aad=aad), repeat),
        "open": per_call_us(lambda: ring.open(sealed, aad=aad), repeat),
        "encrypt": per_call_us(lambda: cipher.encrypt(nonce, data, aad), repeat),
        "decrypt": per_call_us(lambda: cipher.decrypt(nonce, ciphertext, aad), repeat),
        "sha256": per_call_us(lambda: hashlib.sha256(data).digest(), repeat),
    }


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    command = command or " ".join(["python -m bench.keyring_cost", *sys.argv[1:]])
    keys = {
        "EC P-256, PKCS#8 DER": pkcs8_der(ec_key()),
        "RSA-2048, PKCS#8 DER": pkcs8_der(rsa_key()),
    }
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        "Key encryption at rest, in process, unpinned: µs per call, median of "
        f"{args.repeat} runs of ≥0.2 s each. `seal` and `open` are `Keyring.seal` and "
        "`Keyring.open` (AES-256-GCM, fresh 96-bit nonce, the certificate's AAD); "
        "`AESGCM` is the cipher call alone; sha256 of the same bytes is the same-run baseline.",
        "",
        "| key | bytes | seal µs | open µs | AESGCM encrypt µs | AESGCM decrypt µs "
        "| sha256 µs | seal / sha256 | open / sha256 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in keys.items():
        r = measure(data, args.repeat)
        lines.append(
            f"| {name} | {len(data):,} | {r['seal']:.2f} | {r['open']:.2f} | "
            f"{r['encrypt']:.2f} | {r['decrypt']:.2f} | {r['sha256']:.2f} | "
            f"{r['seal'] / r['sha256']:.1f}x | {r['open'] / r['sha256']:.1f}x |"
        )
    emit(lines, record=args.record)


if __name__ == "__main__":
    main()
