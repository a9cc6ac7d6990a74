"""What the registry returns: frozen dataclasses (never ORM rows), each with ``to_dict``."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgeloop.artifacts import ModelCard
from edgeloop.errors import RegistryError

__all__ = [
    "AliasEvent",
    "BlobInfo",
    "BundleInfo",
    "Evaluation",
    "LineageNode",
    "ModelInfo",
    "VersionInfo",
    "check_name",
    "check_sha256",
    "parse_ref",
]

_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_name(value: str, what: str) -> str:
    """Model, alias and variant names: letters, digits, ``.``, ``_``, ``-``; 1 to 200 long."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise RegistryError(
            f"{what} {value!r} is not valid: expected 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_sha256(value: str, what: str) -> str:
    """A sha256 hex digest (64 hex digits), returned in lowercase."""
    if not isinstance(value, str) or not _SHA_RE.match(value):
        raise RegistryError(f"{what} {value!r} is not a sha256 hex digest (64 hex digits)")
    return value.lower()


def parse_ref(ref: str) -> tuple[str, int | str | None]:
    """``"m"`` -> (m, None: latest); ``"m@3"`` -> (m, 3); ``"m@production"`` -> (m, alias)."""
    name, sep, rest = ref.partition("@")
    check_name(name, "model name")
    if not sep:
        return name, None
    if rest.isdigit():
        return name, int(rest)
    if rest.startswith(("-", "+")) or not rest:
        raise RegistryError(f"reference {ref!r}: expected NAME, NAME@VERSION or NAME@ALIAS")
    return name, check_name(rest, "alias")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ModelCard):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class _ToDict:
    def to_dict(self) -> dict[str, Any]:
        out = _jsonable(self)
        assert isinstance(out, dict)
        return out


@dataclass(frozen=True)
class BlobInfo(_ToDict):
    """A content-addressed file: ``path`` is relative to the registry's data dir."""

    sha256: str
    length: int
    media_type: str
    path: str


@dataclass(frozen=True)
class BundleInfo(_ToDict):
    """One per-device variant of a version (e.g. int8 for CPUs with VNNI)."""

    model: str
    version: int
    variant: str
    sha256: str
    length: int
    path: str
    requirements: dict[str, Any]
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Evaluation(_ToDict):
    model: str
    version: int
    metric: str
    value: float
    dataset: str | None
    dataset_sha256: str | None
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class VersionInfo(_ToDict):
    model: str
    version: int
    artifact: BlobInfo
    card: ModelCard | None
    card_sha256: str | None
    description: str
    created_at: datetime
    created_by: str
    aliases: tuple[str, ...] = ()
    bundles: tuple[BundleInfo, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True)
class ModelInfo(_ToDict):
    name: str
    description: str
    created_at: datetime
    created_by: str
    versions: tuple[int, ...]
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def latest(self) -> int | None:
        return self.versions[-1] if self.versions else None


@dataclass(frozen=True)
class AliasEvent(_ToDict):
    """One move of an alias: ``action`` is set, revert or remove."""

    model: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    reason: str
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class LineageNode(_ToDict):
    """One input in a version's lineage, resolved against the registry where it is known.

    ``kind``: ``version`` (a registry version: ``model``/``version`` set, children are its own
    lineage), ``bundle`` (a bundle of ``model``/``version``), ``card`` (the card of a version),
    ``blob`` (a stored artifact, no version), or ``unknown`` (only the hash is known).
    ``cycle`` marks a version already on the path (its lineage is not repeated).
    """

    role: str
    sha256: str
    kind: str
    name: str | None = None
    uri: str | None = None
    model: str | None = None
    version: int | None = None
    cycle: bool = False
    children: tuple[LineageNode, ...] = ()

    @property
    def ref(self) -> str | None:
        return f"{self.model}@{self.version}" if self.model and self.version else None

    def walk(self) -> list[LineageNode]:
        """This node and every node below it, depth first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out
