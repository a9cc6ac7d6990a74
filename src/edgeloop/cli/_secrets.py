"""Passphrase options shared by the key, pack and release commands."""

from __future__ import annotations

import os

import typer

from edgeloop.errors import InputError

__all__ = ["PASSPHRASE_ENV_OPTION", "PASSPHRASE_OPTION", "read_passphrase"]

PASSPHRASE_OPTION = typer.Option(
    False, "--passphrase", help="Prompt for the passphrase that protects the private keys."
)
PASSPHRASE_ENV_OPTION = typer.Option(
    None,
    "--passphrase-env",
    metavar="VAR",
    help="Read the private keys' passphrase from environment variable VAR.",
)


def read_passphrase(prompt: bool, env: str | None, *, confirm: bool = False) -> bytes | None:
    """The passphrase from ``--passphrase-env VAR`` or a hidden prompt, else None."""
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise InputError(f"--passphrase-env {env}: the variable is unset or empty")
        return value.encode()
    if prompt:
        text = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
        if not text:
            raise InputError("the passphrase must not be empty")
        return str(text).encode()
    return None
