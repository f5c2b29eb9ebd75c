"""`wharf keys` (key-encryption keys) and `wharf webhooks` (the delivery worker)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wharf.app import job_handlers
from wharf.core.config import Settings
from wharf.core.data.db import engine_for
from wharf.core.errors import WharfError
from wharf.core.keys import KeySource, generate_key_file, key_file, remove_key, rotate_key_file
from wharf.core.outbound import Outbound
from wharf.core.rewrap import rewrap_all, usage_all
from wharf.core.work import Worker

keys = typer.Typer(help="Key-encryption keys for private keys and secrets at rest.")


webhooks = typer.Typer(help="Webhook deliveries.", no_args_is_help=True)


def _keys(settings: Settings) -> KeySource:
    try:
        return KeySource(settings)
    except WharfError as exc:
        typer.secho(exc.detail, fg="red", err=True)
        raise typer.Exit(1) from exc


def _key_file(settings: Settings) -> Path:
    """The key file these commands change; refused while the variable overrides it, since
    the server would never read what they wrote."""
    configured = settings.key_encryption_keys
    if configured is not None and configured.get_secret_value().strip():
        typer.secho(
            "WHARF_KEY_ENCRYPTION_KEYS is set, so the key file is not used. Rotate there: put "
            "a new `id:base64` first, restart, then run `wharf keys rewrap`.",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
    return key_file(settings)


@keys.command("generate")
def generate(
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Succeed quietly when the key file exists.")
    ] = False,
) -> None:
    """Write a new key file (var/keys, mode 0600) with one fresh key."""
    settings = Settings()
    configured = settings.key_encryption_keys
    if if_missing and configured is not None and configured.get_secret_value().strip():
        return  # the keys come from the variable: there is nothing to generate
    path = _key_file(settings)
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
    path = _key_file(Settings())
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
    path = _key_file(settings)
    if not force and key_id != _keys(settings).keyring().current_id:
        with engine_for(settings).connect() as conn:
            still = usage_all(conn)[key_id]
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
    report = rewrap_all(engine, keyring, batch=batch)
    typer.echo(f"Re-encrypted {report.rewrapped} values under key {keyring.current_id}.")
    for damaged in report.damaged:
        typer.secho(
            f"{damaged} does not decrypt under its key (damaged, or copied from another row); "
            "it was left as it is.",
            fg="red",
            err=True,
        )
    if report.missing or report.damaged:
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
