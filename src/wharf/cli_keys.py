"""`wharf keys` (key-encryption keys) and `wharf webhooks` (the delivery worker)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from sqlalchemy import Connection

from wharf.app import job_handlers
from wharf.certificates import service as certificates
from wharf.certificates.service import rewrap_keys
from wharf.core.config import Settings
from wharf.core.db import engine_for
from wharf.core.errors import WharfError
from wharf.core.keys import KeySource, generate_key_file, key_file, remove_key, rotate_key_file
from wharf.core.outbound import Outbound
from wharf.core.rewrap import RewrapReport
from wharf.core.webhooks import service as webhook_service
from wharf.core.webhooks.service import rewrap_secrets, sync_settings_endpoint
from wharf.core.work import Worker

keys = typer.Typer(help="Key-encryption keys for private keys and secrets at rest.")


def key_usage(conn: Connection) -> Counter[str]:
    """How many stored values each key seals, over every domain that seals any."""
    return certificates.key_usage(conn) + webhook_service.key_usage(conn)


webhooks = typer.Typer(help="Webhook deliveries.", no_args_is_help=True)


def _keys(settings: Settings) -> KeySource:
    try:
        return KeySource(settings)
    except WharfError as exc:
        typer.secho(exc.detail, fg="red", err=True)
        raise typer.Exit(1) from exc


@keys.command("generate")
def generate(
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Succeed quietly when the key file exists.")
    ] = False,
) -> None:
    """Write a new key file (var/keys, mode 0600) with one fresh key."""
    path = key_file(Settings())
    try:
        key_id = generate_key_file(path)
    except FileExistsError as exc:
        if if_missing:
            return
        typer.secho(f"{path} exists; use `wharf keys rotate` to add a key.", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Wrote {path} with key {key_id}. Keep it safe: without it nothing decrypts.")


@keys.command("rotate")
def rotate() -> None:
    """Add a new key and make it current; new data is encrypted under it at once. Then run
    `wharf keys rewrap` to move what is stored onto it."""
    path = key_file(Settings())
    if not path.exists():
        typer.secho(f"No key file at {path}; run `wharf keys generate`.", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"Key {rotate_key_file(path)} is now current in {path}.")


@keys.command("remove")
def remove(
    key_id: Annotated[str, typer.Argument(help="A key that is not current.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Remove it although values are still sealed under it: they cannot be "
            "decrypted until the key is added back.",
        ),
    ] = False,
) -> None:
    """Drop an old key from the key file, once nothing is sealed under it (`wharf keys
    rewrap` first)."""
    settings = Settings()
    path = key_file(settings)
    if not force and key_id != _keys(settings).keyring().current_id:
        with engine_for(settings).connect() as conn:
            still = key_usage(conn)[key_id]
        if still:
            typer.secho(
                f"{still} values are still sealed under key {key_id}; run `wharf keys "
                "rewrap` first, or they cannot be decrypted once it is gone.",
                fg="red",
                err=True,
            )
            raise typer.Exit(1)
    try:
        remove_key(path, key_id)
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Removed key {key_id}.")


@keys.command("rewrap")
def rewrap(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction.")] = 500,
) -> None:
    """Re-encrypt every stored key and secret under the current key, in batches. Resumable,
    and safe to run twice; rows under a key the keyring lacks are reported and kept."""
    settings = Settings()
    keyring = _keys(settings).keyring()
    engine = engine_for(settings)
    report = RewrapReport()
    report.add(rewrap_keys(engine, keyring, batch=batch))
    report.add(rewrap_secrets(engine, keyring, batch=batch))
    typer.echo(f"Re-encrypted {report.rewrapped} values under key {keyring.current_id}.")
    if report.missing:
        for key_id, count in sorted(report.missing.items()):
            typer.secho(
                f"{count} values are under key {key_id}, which the keyring lacks: add it back "
                "(WHARF_KEY_ENCRYPTION_KEYS or the key file) and run this again. They are "
                "kept as they are.",
                fg="red",
                err=True,
            )
        raise typer.Exit(1)


@webhooks.command("deliver")
def deliver(
    once: Annotated[bool, typer.Option("--once", help="Send what is due now, then exit.")] = False,
) -> None:
    """Run a delivery worker on its own (beside, or instead of, the ones in `wharf serve`)."""
    settings = Settings()
    keys = _keys(settings)
    engine = engine_for(settings)
    outbound = Outbound.from_settings(settings)
    with engine.begin() as conn:
        sync_settings_endpoint(conn, url=settings.certificate_webhook_url, outbound=outbound)
    worker = Worker(
        engine,
        job_handlers(settings, engine=engine, keys=keys, outbound=outbound),
        poll_seconds=settings.job_poll_seconds,
        lease_seconds=settings.job_lease_seconds,
    )
    try:
        if once:
            total = 0
            while ran := worker.run_once():
                total += ran
            typer.echo(f"Ran {total} deliveries.")
            return
        typer.echo("Delivering webhooks; Ctrl-C stops.")
        worker.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        outbound.close()
