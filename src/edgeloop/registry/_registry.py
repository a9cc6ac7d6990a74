"""The :class:`Registry`: one database plus one data dir of content-addressed blobs."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from edgeloop.artifacts import Manifest, ModelCard
from edgeloop.db import (
    BlobRow,
    default_data_dir,
    make_engine,
    read_session,
    upgrade,
    write_session,
)
from edgeloop.errors import BundleFormatError, RegistryError
from edgeloop.registry import _aliases, _ops, _suites
from edgeloop.registry._blobs import BlobStore
from edgeloop.registry._lineage import derived_from, lineage
from edgeloop.registry._types import (
    AliasEvent,
    BundleInfo,
    Evaluation,
    LineageNode,
    ModelInfo,
    VersionInfo,
    parse_ref,
)

__all__ = ["BundleSpec", "Registry", "bundle_manifest", "default_actor"]

# (bundle file, variant name, extra requirements such as {"isa": ["avx512_vnni"]}, merged
# over the requirements in the bundle's manifest)
BundleSpec = tuple[str | Path, str, Mapping[str, Any]]
_RETRIES = 3


def bundle_manifest(path: str | Path) -> Manifest:
    """The (unverified) manifest of an ``.elb`` bundle: the registry stores, devices verify."""
    from edgeloop._io import read_bytes
    from edgeloop.bundle import parse_container, parse_manifest

    data = read_bytes(path, "bundle")
    try:
        return parse_manifest(parse_container(data).manifest)
    except BundleFormatError as e:
        raise RegistryError(f"{str(path)!r} is not an edgeloop bundle (.elb): {e}") from e


def _check_bundle(path: str | Path, manifest: Manifest, name: str, version: int) -> None:
    if (manifest.name, manifest.version) != (name, version):
        raise RegistryError(
            f"bundle {str(path)!r} is {manifest.name}@{manifest.version}, "
            f"but it is being attached to {name}@{version}"
        )


def default_actor() -> str:
    """Who is acting: ``$EDGELOOP_ACTOR``, else the login name."""
    env = os.environ.get("EDGELOOP_ACTOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Registry:
    """Models, versions, cards, evaluations, bundles, aliases and lineage.

    ``url`` is a SQLAlchemy URL or engine (default ``$EDGELOOP_DB``, else ``edgeloop.db`` in
    the data dir); ``data_dir`` holds the blobs (default ``$EDGELOOP_DATA``, else the user
    data dir). The schema is migrated to the newest revision when the registry opens.
    """

    def __init__(
        self,
        url: str | Engine | None = None,
        data_dir: str | Path | None = None,
        *,
        migrate: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        if url is None:
            url = os.environ.get("EDGELOOP_DB") or f"sqlite:///{self.data_dir / 'edgeloop.db'}"
        # An engine passed in (a server sharing one pool) stays open when the registry closes.
        self._owns_engine = not isinstance(url, Engine)
        self.engine = url if isinstance(url, Engine) else make_engine(url)
        self.url = self.engine.url.render_as_string(hide_password=True)
        self.blobs = BlobStore(self.data_dir)
        if migrate:
            upgrade(self.engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- writes -----------------------------------------------------------------------

    @contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        try:
            with write_session(self.engine) as s:
                yield s
        except sa.exc.IntegrityError as e:
            raise RegistryError(f"{what} conflicts with a concurrent change: {e.orig}") from e

    def push(
        self,
        model_file: str | Path,
        name: str,
        *,
        card: ModelCard | str | Path | None = None,
        version: int | None = None,
        bundles: Iterable[BundleSpec] = (),
        alias: str | None = None,
        description: str = "",
        reason: str = "",
        actor: str | None = None,
    ) -> VersionInfo:
        """Store ``model_file`` as the next version of ``name`` (or exactly ``version``).

        Bundles (per-device variants) and an alias may be attached in the same transaction.
        """
        actor = actor or default_actor()
        card_file = None
        if card is not None and not isinstance(card, ModelCard):
            card_file, card = card, ModelCard.load(card)
        artifact = self.blobs.put_file(model_file)
        if card_file is not None and card is not None and card.sha256.lower() != artifact.sha256:
            raise RegistryError(
                f"card {str(card_file)!r} describes sha256 {card.sha256}, but "
                f"{str(model_file)!r} has sha256 {artifact.sha256}: is it the card of another file?"
            )
        suite, scores = self._score_new(artifact.sha256, name)
        stored = []
        for path, variant, reqs in bundles:
            manifest = bundle_manifest(path)
            blob = self.blobs.put_file(path)
            stored.append((path, manifest, blob, variant, {**manifest.requirements, **reqs}))
        for attempt in range(_RETRIES):
            try:
                with write_session(self.engine) as s:
                    info = _ops.create_version(
                        s,
                        name,
                        artifact,
                        card=card,
                        version=version,
                        description=description,
                        actor=actor,
                    )
                    for path, manifest, blob, variant, reqs in stored:
                        _check_bundle(path, manifest, name, info.version)
                        _ops.add_bundle(
                            s,
                            name,
                            info.version,
                            blob,
                            variant=variant,
                            requirements=reqs,
                            actor=actor,
                        )
                    if suite is not None:
                        _suites.record_suite(s, name, info.version, suite, scores, actor)
                    if alias is not None:
                        _aliases.set_alias(s, name, alias, info.version, reason=reason, actor=actor)
                    return _ops.get_version(s, name, info.version)
            except sa.exc.IntegrityError as e:
                # Another writer took the same version number or model name: try again.
                if attempt == _RETRIES - 1:
                    raise RegistryError(f"cannot push {name!r}: {e.orig}") from e
        raise AssertionError("unreachable")

    def _score_new(
        self, model_sha256: str, name: str
    ) -> tuple[_suites.EvalSuite | None, dict[str, tuple[float, int]]]:
        """The model's suite and a new model file's scores on it (before the version exists,
        so a file that cannot be scored on its model's suite is refused, nothing written)."""
        with read_session(self.engine) as s:
            suite = _suites.get_suite(s, name)
        if suite is None:
            return None, {}
        data = self.blobs.read(suite.data_sha256)
        scores = _suites.score_suite(
            self.blobs.path(model_sha256), data, suite.segment_key, suite.metric
        )
        return suite, scores

    def set_suite(
        self,
        name: str,
        data_file: str | Path,
        *,
        segment_key: str | None = None,
        metric: str = "accuracy",
        max_drop: float = 0.01,
        actor: str | None = None,
    ) -> _suites.EvalSuite:
        """Register ``name``'s evaluation suite (an ``.npz`` with ``x``, ``y`` and optionally
        the ``segment_key`` column) and score the versions its aliases point to on it.

        Every version pushed from then on is scored on it; ``rollout start`` holds a version to
        at most ``max_drop`` below production, overall and in every segment.
        """
        actor = actor or default_actor()
        raw = Path(data_file).read_bytes() if Path(data_file).is_file() else None
        if raw is None:
            raise RegistryError(f"evaluation suite {str(data_file)!r}: no such file")
        _suites.load_suite_data(raw, segment_key, repr(str(data_file)))
        blob = self.blobs.put_file(data_file, "application/x-npz")
        with self._write(f"registering the evaluation suite of {name!r}") as s:
            suite = _suites.set_suite(
                s,
                name,
                blob,
                segment_key=segment_key,
                metric=metric,
                max_drop=max_drop,
                actor=actor,
            )
            aliased = sorted(set(_ops.get_model(s, name).aliases.values()))
        for version in aliased:
            self.run_suite(f"{name}@{version}", actor=actor)
        return suite

    def get_suite(self, name: str) -> _suites.EvalSuite | None:
        with read_session(self.engine) as s:
            return _suites.get_suite(s, name)

    def run_suite(self, ref: str, *, actor: str | None = None) -> dict[str, tuple[float, int]]:
        """Score the version ``ref`` names on its model's suite and record it;
        ``{slice: (value, rows)}``."""
        with read_session(self.engine) as s:
            v = self._resolve(s, ref)
            suite = _suites.get_suite(s, v.model)
        if suite is None:
            raise RegistryError(
                f"model {v.model!r} has no evaluation suite; add one: edgeloop registry suite "
                f"add {v.model} --data FILE.npz"
            )
        scores = _suites.score_suite(
            self.blobs.path(v.artifact.sha256),
            self.blobs.read(suite.data_sha256),
            suite.segment_key,
            suite.metric,
        )
        with self._write(f"recording the suite scores of {ref}") as s:
            _suites.record_suite(s, v.model, v.version, suite, scores, actor or default_actor())
        return scores

    def suite_regression(
        self, name: str, candidate: int, baseline: int
    ) -> _suites.Regression | None:
        with read_session(self.engine) as s:
            return _suites.suite_regression(s, name, candidate, baseline)

    def add_bundle(
        self,
        ref: str,
        bundle_file: str | Path,
        variant: str,
        requirements: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> BundleInfo:
        """Attach a bundle variant (``int8-vnni``, ``fp32`` ...) to an existing version.

        The bundle's manifest must name this model and version; its requirements are stored,
        with ``requirements`` merged over them.
        """
        manifest = bundle_manifest(bundle_file)
        blob = self.blobs.put_file(bundle_file)
        with self._write(f"attaching variant {variant!r} to {ref}") as s:
            v = self._resolve(s, ref)
            _check_bundle(bundle_file, manifest, v.model, v.version)
            return _ops.add_bundle(
                s,
                v.model,
                v.version,
                blob,
                variant=variant,
                requirements={**manifest.requirements, **(requirements or {})},
                actor=actor or default_actor(),
            )

    def add_evaluation(
        self,
        ref: str,
        metric: str,
        value: float,
        *,
        dataset: str | None = None,
        dataset_sha256: str | None = None,
        actor: str | None = None,
    ) -> Evaluation:
        with self._write(f"recording {metric!r} for {ref}") as s:
            v = self._resolve(s, ref)
            return _ops.add_evaluation(
                s,
                v.model,
                v.version,
                metric=metric,
                value=value,
                dataset=dataset,
                dataset_sha256=dataset_sha256,
                actor=actor or default_actor(),
            )

    def set_alias(
        self,
        ref: str,
        alias: str,
        *,
        reason: str = "",
        actor: str | None = None,
        action: str | None = None,
    ) -> AliasEvent:
        """Point ``alias`` at the version ``ref`` names (``model@3``); recorded in the history.

        Moving to an older version is recorded as a ``revert`` unless ``action`` says
        otherwise.
        """
        with self._write(f"moving alias {alias!r} to {ref}") as s:
            v = self._resolve(s, ref)
            return _aliases.set_alias(
                s,
                v.model,
                alias,
                v.version,
                reason=reason,
                actor=actor or default_actor(),
                action=action,
            )

    def remove_alias(
        self, model: str, alias: str, *, reason: str = "", actor: str | None = None
    ) -> AliasEvent:
        with self._write(f"removing alias {alias!r} of {model!r}") as s:
            return _aliases.remove_alias(
                s, model, alias, reason=reason, actor=actor or default_actor()
            )

    # --- reads ------------------------------------------------------------------------

    def resolve(self, ref: str) -> VersionInfo:
        """``model`` (newest), ``model@3`` or ``model@production``."""
        with read_session(self.engine) as s:
            return self._resolve(s, ref)

    @staticmethod
    def _resolve(session: Session, ref: str) -> VersionInfo:
        name, which = parse_ref(ref)
        return _ops.resolve(session, name, which)

    def get_version(self, model: str, version: int) -> VersionInfo:
        with read_session(self.engine) as s:
            return _ops.get_version(s, model, version)

    def get_model(self, model: str) -> ModelInfo:
        with read_session(self.engine) as s:
            return _ops.get_model(s, model)

    def list_models(self) -> list[ModelInfo]:
        with read_session(self.engine) as s:
            return _ops.list_models(s)

    def list_versions(self, model: str) -> list[VersionInfo]:
        with read_session(self.engine) as s:
            return _ops.list_versions(s, model)

    def find(self, sha256: str) -> list[VersionInfo]:
        """Versions whose model file, card or a bundle has this sha256."""
        with read_session(self.engine) as s:
            return _ops.find_versions(s, sha256)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasEvent]:
        with read_session(self.engine) as s:
            return _aliases.alias_history(s, model, alias)

    def lineage(self, ref: str) -> LineageNode:
        """The tree of what ``ref`` came from, resolved against this registry."""
        with read_session(self.engine) as s:
            v = self._resolve(s, ref)
            return lineage(s, v.model, v.version)

    def derived_from(self, ref_or_sha256: str) -> list[tuple[str, int, str]]:
        """Versions whose lineage names this hash, or any file of version ``ref``.

        Returns ``(model, version, role)`` triples, oldest first: which models came from this
        dataset, recipe, or version.
        """
        with read_session(self.engine) as s:
            if "@" in ref_or_sha256:
                v = self._resolve(s, ref_or_sha256)
                hashes = [v.artifact.sha256, *(b.sha256 for b in v.bundles)]
                hashes += [v.card_sha256] if v.card_sha256 else []
            else:
                hashes = [ref_or_sha256]
            seen: dict[tuple[str, int, str], None] = {}
            for sha in hashes:
                seen.update(dict.fromkeys(derived_from(s, sha)))
            return list(seen)

    def blob_path(self, sha256: str) -> Path:
        return self.blobs.path(sha256)

    def verify(self) -> list[str]:
        """Re-hash every stored artifact; one line per problem (empty: all intact)."""
        with read_session(self.engine) as s:
            rows = s.execute(sa.select(BlobRow.sha256, BlobRow.length).order_by(BlobRow.sha256))
            blobs = [(str(sha), int(length)) for sha, length in rows]
        return [p for sha, length in blobs if (p := self.blobs.check(sha, length)) is not None]

    def gc(self, *, min_age_s: float = 3600.0, dry_run: bool = False) -> list[str]:
        """Delete blob files no database row refers to (left by failed pushes).

        Files younger than ``min_age_s`` are kept: a push in progress writes its file before
        its row. Returns the sha256 of each file deleted (or that would be, with ``dry_run``).
        """
        import time

        with read_session(self.engine) as s:
            known = set(s.scalars(sa.select(BlobRow.sha256)).all())
        cutoff = time.time() - min_age_s
        orphans = [sha for sha, mtime in self.blobs.stored() if sha not in known and mtime < cutoff]
        if not dry_run:
            for sha in orphans:
                self.blobs.path(sha).unlink(missing_ok=True)
        return orphans

    def read_blob(self, sha256: str) -> bytes:
        """A stored artifact's bytes, checked against the hash."""
        return self.blobs.read(sha256)
