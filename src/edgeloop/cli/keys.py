"""``edgeloop keys``: create and rotate the release keys (TUF roles, release, fleet)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeloop.cli._secrets import PASSPHRASE_ENV_OPTION, PASSPHRASE_OPTION, read_passphrase

app = typer.Typer(
    name="keys",
    help="Create and rotate the keys that sign bundles and the update channel.",
    no_args_is_help=True,
)


@app.command("init")
def init(
    directory: Path = typer.Option(..., "--dir", help="Directory to create the keys in."),
    threshold: int = typer.Option(1, "--threshold", help="Root signatures a new root needs (K)."),
    root_keys: int = typer.Option(1, "--root-keys", help="Number of root keys (N)."),
    release_key: Path | None = typer.Option(
        None, "--release-key", help="Trust this existing release public key (PEM) instead."
    ),
    passphrase: bool = PASSPHRASE_OPTION,
    passphrase_env: str | None = PASSPHRASE_ENV_OPTION,
) -> None:
    """Create TUF root (K of N), targets, snapshot, timestamp, release and fleet keys."""
    from edgeloop.cli._console import console, table
    from edgeloop.update import init_keys

    existed = (directory / "root.json").is_file()
    # an existing key set is kept, never replaced: no passphrase is needed to say so
    secret = None if existed else read_passphrase(passphrase, passphrase_env, confirm=True)
    ring = init_keys(
        directory,
        threshold=threshold,
        root_keys=root_keys,
        passphrase=secret,
        release_public_key=release_key,
        exist_ok=True,
    )
    if existed:
        console.print(
            f"{ring.dir} already holds these keys (root {threshold}-of-{root_keys}): kept them, "
            "nothing changed. `edgeloop keys rotate ROLE` replaces a key.",
            markup=False,
            highlight=False,
        )
        return
    rows = [
        (p.name, oct(p.stat().st_mode & 0o777)) for p in sorted(ring.dir.iterdir()) if p.is_file()
    ]
    table(f"keys in {ring.dir}", ["file", "mode"], rows)
    console.print(
        f"root {threshold}-of-{root_keys}; ship [bold]{ring.dir / 'root.json'}[/] to devices "
        f"and encrypt bundles to [bold]{ring.dir / 'fleet.pub.pem'}[/]."
    )


@app.command("rotate")
def rotate(
    role: str = typer.Argument(..., help="root, targets, snapshot, timestamp, release or fleet."),
    directory: Path = typer.Option(..., "--dir", help="The keys directory."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Re-sign this repository's metadata with the new keys."
    ),
    release_key: Path | None = typer.Option(
        None, "--release-key", help="For ROLE release: trust this existing public key (PEM)."
    ),
    passphrase: bool = PASSPHRASE_OPTION,
    passphrase_env: str | None = PASSPHRASE_ENV_OPTION,
) -> None:
    """Replace ROLE's key; the new root is signed by the old root keys too."""
    from edgeloop.cli._console import console
    from edgeloop.update import Repository, rotate_key

    secret = read_passphrase(passphrase, passphrase_env)
    version = rotate_key(directory, role, passphrase=secret, release_public_key=release_key)
    if version is None:
        console.print(f"rotated {role}: re-encrypt bundles to {directory / 'fleet.pub.pem'}")
    else:
        console.print(f"rotated {role}: root is now version {version}")
    if repo is not None:
        from edgeloop.update import KeyRing

        Repository(repo, KeyRing(directory, secret)).resign()
        console.print(f"re-signed the metadata in {repo}")


@app.command("tls")
def tls(
    directory: Path = typer.Option(..., "--dir", help="Directory for ca.pem, server.pem/.key."),
) -> None:
    """Make a local CA and a server certificate for 127.0.0.1 (loopback trials and the demo).

    Serve with `edgeloop server --tls-cert DIR/server.pem --tls-key DIR/server.key` and pin
    `DIR/ca.pem` in devices (`edgeloop fleet --ca DIR/ca.pem provision`). A real fleet uses its
    organisation's CA and a certificate for the server's name.
    """
    from edgeloop.cli._console import console
    from edgeloop.demo import make_local_ca

    ca = make_local_ca(directory)
    console.print(f"CA {ca.ca_pem}; certificate {ca.cert_pem} and key {ca.key_pem} (0600)")


@app.command("director")
def director(
    directory: Path = typer.Option(..., "--dir", help="The keys directory (with the root keys)."),
    key: Path = typer.Option(
        ..., "--key", help="The director's public key (the server's DATA/director.pub.pem)."
    ),
    repo: Path | None = typer.Option(
        None, "--repo", help="Publish the new root in this repository (the server's DATA/tuf)."
    ),
    to: Path | None = typer.Option(
        None, "--to", help="Also update the root in this server keys dir (its --keys)."
    ),
    passphrase: bool = PASSPHRASE_OPTION,
    passphrase_env: str | None = PASSPHRASE_ENV_OPTION,
) -> None:
    """Name KEY as the fleet director's key in a new root version (signed by the root keys).

    Devices learn the director key from the root, so this is how a new one (after a server
    compromise, or for a data dir from before it was named) reaches them without reflashing.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from edgeloop.bundle import load_public_key
    from edgeloop.cli._console import console
    from edgeloop.errors import KeyError_
    from edgeloop.update import KeyRing, Repository, name_director

    public = load_public_key(key)
    if not isinstance(public, Ed25519PublicKey):
        raise KeyError_(f"director key {str(key)!r} is X25519, expected Ed25519")
    secret = read_passphrase(passphrase, passphrase_env)
    version = name_director(directory, public, passphrase=secret)
    if version is None:
        console.print("the root already names this director key; nothing to do")
        return
    console.print(f"root version {version} names the director key")
    if to is not None:
        from edgeloop.update import sync_roots

        sync_roots(directory, to)
    if repo is not None:
        Repository(repo, KeyRing(directory, secret)).refresh_timestamp()
        console.print(f"published the new root in {repo}")


@app.command("online")
def online(
    directory: Path = typer.Option(..., "--dir", help="The keys directory (build side)."),
    to: Path = typer.Option(..., "--to", help="The fleet server's keys dir (its --keys)."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Create the server's TUF repository here (its DATA/tuf)."
    ),
    passphrase: bool = PASSPHRASE_OPTION,
    passphrase_env: str | None = PASSPHRASE_ENV_OPTION,
) -> None:
    """Give a fleet server its online keys only (snapshot, timestamp, fleet; public files).

    The root, targets and release keys stay here: releases are listed (`edgeloop release
    BUNDLE --repo DATA/tuf --keys KEYS --target NAME/VERSION/NAME-VERSION-VARIANT.elb`) and
    revoked on this side, and the server cannot list a version on its own.
    """
    from edgeloop.cli._console import console
    from edgeloop.update import KeyRing, Repository, export_online

    written = export_online(directory, to)
    console.print(f"wrote {len(written)} files to {to} (no root, targets or release key)")
    if repo is not None:
        secret = read_passphrase(passphrase, passphrase_env)
        Repository(repo, KeyRing(directory, secret)).init()
        console.print(f"created the TUF repository in {repo}")
