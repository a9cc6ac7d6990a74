"""Server settings and the secrets in its data dir, created on first start.

::

    DATA/
      admin-token        0600  the admin API's bearer token
      director.pem       0600  Ed25519: signs assignments (the TUF root names its public key)
      director.pub.pem         its public key, for `edgeloop keys director` on the build side
      keys/              the server's part of the release keys (``edgeloop keys online`` on the
                         build machine): root.json, snapshot/timestamp keys, fleet.pem (X25519,
                         bundles encrypt to it), release.pub.pem; the root, targets and release
                         private keys stay on the build side. Only with ``create_release_keys``
                         (``edgeloop server --create-release-keys``, a trial server) does the
                         server make every key here itself (``edgeloop.update.init_keys``).
      tuf/metadata/ tuf/targets/   the TUF repository devices fetch from
      blobs/             the registry's files (when the registry shares this data dir)

Everything the server knows lives there or in the database, so any number of processes given
the same ``--db`` and ``--data`` serve the same fleet.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgeloop._io import atomic_write_text, read_bytes
from edgeloop.bundle import (
    generate_signing_key,
    load_encryption_key,
    load_signing_key,
    save_private_key,
    save_public_key,
)
from edgeloop.errors import EdgeloopError, FileError, InputError
from edgeloop.update import KeyRing, Repository, init_keys, name_director

__all__ = [
    "SETTINGS_ENV",
    "FleetSecrets",
    "FleetSettings",
    "prepare_data_dir",
    "settings_from_env",
    "settings_to_env",
]

SECRET_MODE = 0o600


@dataclass(frozen=True)
class FleetSettings:
    """How one server process runs; every process of a fleet gets the same db and data dir."""

    db_url: str
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8700
    admin_token_file: Path | None = None  # default DATA/admin-token
    keys_dir: Path | None = None  # default DATA/keys
    registry_dir: Path | None = None  # the registry's blobs; default DATA
    alias: str = "production"  # each model's desired version is this registry alias
    poll_interval_s: float = 60.0
    assignment_ttl_s: float = 86400.0
    max_skew_s: float = 300.0
    report_limit_bytes: int = 1 << 20
    report_retention_s: float = 7 * 86400.0  # telemetry older than this is swept
    migrate: bool = True
    # an empty keys dir: make every release key here (root, targets, release included) instead
    # of refusing; a trial server only (docs/security.md, "Fleet trust")
    create_release_keys: bool = False
    # agent builds (sha256 of the agent's files) allowed to enroll and check in; empty: any
    agent_builds: tuple[str, ...] = ()
    # monitoring (docs/monitor.md): each evaluation merges the sketches of the last
    # ``monitor_window_s`` by version and cohort; one runs every ``monitor_interval_s`` (0:
    # only when asked through the admin API); an alert is raised after ``monitor_raise_after``
    # bad evaluations in a row and cleared after ``monitor_clear_after`` good ones
    monitor_window_s: float = 3600.0
    monitor_interval_s: float = 300.0
    monitor_raise_after: int = 2
    monitor_clear_after: int = 3
    monitor_pause_rollouts: bool = False  # a raised alert pauses running rollouts of the model
    # a raised alert rolls back the model's active rollouts *to* the alerting version (rollouts
    # from it are paused when monitor_pause_rollouts is set)
    monitor_rollback: bool = False
    # a raised alert queues a fine-tuning job (monitor_jobs) for its model, version and cohort
    monitor_finetune_jobs: bool = False
    monitor_webhook_url: str | None = None  # alerts raised and cleared are POSTed here
    monitor_retention_s: float = 7 * 86400.0  # sketches and evaluations older are swept

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        builds = tuple(str(b).strip().lower() for b in self.agent_builds)
        bad = [b for b in builds if len(b) != 64 or any(c not in "0123456789abcdef" for c in b)]
        if bad:
            raise InputError(f"agent build {bad[0]!r}: expected a sha256 (64 hex digits)")
        object.__setattr__(self, "agent_builds", builds)
        if self.poll_interval_s <= 0 or self.assignment_ttl_s <= self.poll_interval_s:
            raise InputError(
                f"poll interval {self.poll_interval_s} s and assignment ttl "
                f"{self.assignment_ttl_s} s: expected 0 < poll interval < ttl"
            )
        if (self.monitor_window_s <= 0 or self.monitor_interval_s < 0
                or self.monitor_raise_after < 1 or self.monitor_clear_after < 1):
            raise InputError(
                f"monitor window {self.monitor_window_s} s, interval {self.monitor_interval_s} "
                f"s, raise after {self.monitor_raise_after}, clear after "
                f"{self.monitor_clear_after}: expected window > 0, interval >= 0, counts >= 1"
            )
        url = self.monitor_webhook_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise InputError(f"monitor webhook {url!r}: expected an http:// or https:// URL")

    @property
    def admin_token_path(self) -> Path:
        return self.admin_token_file or self.data_dir / "admin-token"

    @property
    def keys_path(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"

    @property
    def registry_path(self) -> Path:
        return self.registry_dir or self.data_dir

    @property
    def tuf_path(self) -> Path:
        return self.data_dir / "tuf"

    @property
    def director_path(self) -> Path:
        return self.data_dir / "director.pem"


@dataclass(frozen=True)
class FleetSecrets:
    admin_token: str
    director_key: Ed25519PrivateKey
    fleet_keys: tuple[X25519PrivateKey, ...]  # current first, then retired ones
    keyring: KeyRing
    created: tuple[Path, ...] = field(default=())  # what this start generated


def _read_token(path: Path) -> str:
    token = read_bytes(path, "admin token file").decode("utf-8", "replace").strip()
    if len(token) < 16:
        raise FileError(
            f"admin token file {str(path)!r} holds {len(token)} characters, expected >= 16"
        )
    return token


def prepare_data_dir(settings: FleetSettings) -> FleetSecrets:
    """Load the server's secrets, generating the missing online ones (0600) on first start.

    The server makes its admin token and director key. The release keys come from the build
    side (``edgeloop keys online``); without them the start is refused with what to run there,
    unless ``settings.create_release_keys`` (then every key is made here, as a trial server).
    """
    created: list[Path] = []
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token_path = settings.admin_token_path
    if not token_path.exists():
        atomic_write_text(token_path, secrets.token_urlsafe(32) + "\n", mode=SECRET_MODE)
        created.append(token_path)
    if not settings.director_path.exists():
        save_private_key(settings.director_path, generate_signing_key())
        created.append(settings.director_path)
    director = load_signing_key(settings.director_path)
    public = settings.data_dir / "director.pub.pem"
    if not public.exists():
        save_public_key(public, director)
    keys = settings.keys_path
    if not (keys / "root.json").exists():
        if not settings.create_release_keys:
            raise InputError(
                f"no release keys in {str(keys)!r}: on the build machine run `edgeloop keys "
                f"init --dir KEYS` then `edgeloop keys online --dir KEYS --to {keys} --repo "
                f"{settings.tuf_path}` (or `edgeloop server --create-release-keys` for a trial "
                "server that holds every key)"
            )
        init_keys(keys, director_public_key=director.public_key())
        created.append(keys)
    ring = KeyRing(keys)
    repo = Repository(settings.tuf_path, ring)
    renamed = _name_director(ring, director)
    if not repo.exists():
        if not (keys / "targets.pem").is_file():  # online keys only: the build side inits it
            raise InputError(
                f"no TUF repository in {str(settings.tuf_path)!r} and no targets key in "
                f"{str(keys)!r} to create one: on the build machine run `edgeloop keys online "
                f"--dir KEYS --to {keys} --repo {settings.tuf_path}`"
            )
        repo.init()
        created.append(settings.tuf_path)
    elif renamed:
        repo.refresh_timestamp()  # publishes the new root for devices to walk to
    fleet = [load_encryption_key(keys / "fleet.pem")]
    for retired in sorted((keys / "retired").glob("fleet*.pem")):
        fleet.append(load_encryption_key(retired))
    return FleetSecrets(
        admin_token=_read_token(token_path),
        director_key=director,
        fleet_keys=tuple(fleet),
        keyring=ring,
        created=tuple(created),
    )


def _name_director(ring: KeyRing, director: Ed25519PrivateKey) -> bool:
    """Name the director key in the root (a data dir from before issue 13, or a new key).

    Only possible where the root keys are at hand; a root kept offline is updated on the build
    machine instead (``edgeloop keys director``), and devices keep the key they were provisioned
    with until then.
    """
    try:
        ring.key_files("root")
    except EdgeloopError:
        return False
    return name_director(ring.dir, director.public_key()) is not None


SETTINGS_ENV = "EDGELOOP_FLEET_SETTINGS"


def settings_to_env(settings: FleetSettings) -> str:
    """JSON for :data:`SETTINGS_ENV`: how ``edgeloop server --workers N`` hands settings over."""
    import dataclasses
    import json

    return json.dumps(
        {
            f.name: (str(v) if isinstance(v, Path) else v)
            for f in dataclasses.fields(settings)
            if (v := getattr(settings, f.name)) is not None
        }
    )


def settings_from_env(text: str) -> FleetSettings:
    import json

    try:
        data = json.loads(text)
    except ValueError as e:
        raise InputError(f"${SETTINGS_ENV} is not JSON ({e})") from e
    paths = {"data_dir", "admin_token_file", "keys_dir", "registry_dir"}
    kwargs: dict[str, Any] = {k: (Path(v) if k in paths else v) for k, v in data.items()}
    try:
        return FleetSettings(**kwargs)
    except TypeError as e:
        raise InputError(f"${SETTINGS_ENV}: {e}") from e
