"""What the demo's stages share: the context passed from stage to stage, and the results.

A stage reads what earlier stages left in :class:`DemoContext` and adds its own outputs; it
returns a one-line summary and its figures (:data:`StageResult`), which the runner records as a
:class:`DemoStep` in ``demo.json``. A stage that runs before what it needs fails with one line
(:func:`need`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edgeloop.errors import InputError

if TYPE_CHECKING:
    from edgeloop.artifacts import DeviceProfile, ModelCard
    from edgeloop.demo._fleet import DemoFleet
    from edgeloop.demo._loop import LoopState
    from edgeloop.demo._server import DemoServer

__all__ = [
    "BAD_ERROR_SHARE",
    "BAD_VERSION",
    "MODEL",
    "DemoContext",
    "DemoResult",
    "DemoStep",
    "Stage",
    "StageResult",
    "need",
]

T = TypeVar("T")

MODEL = "digits-cnn"
BAD_VERSION = 3
BAD_ERROR_SHARE = 0.3

# A stage's one-line summary and its figures (JSON values).
StageResult = tuple[str, dict[str, Any]]


@dataclass
class DemoStep:
    name: str
    summary: str
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    workdir: Path
    steps: list[DemoStep] = field(default_factory=list)
    # how to serve the fleet again, the dashboard, the admin token, commands to try next
    next: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        steps = [asdict(s) for s in self.steps]
        out: dict[str, Any] = {"workdir": str(self.workdir), "steps": steps}
        if self.next is not None:
            out["next"] = self.next
        return out


@dataclass
class DemoContext:
    """The demo's working state, filled in stage by stage (every file lands under ``work``)."""

    work: Path
    epochs: int
    devices: int
    profile: DeviceProfile | None = None
    checkpoint: Path | None = None
    onnx: Path | None = None
    card: ModelCard | None = None
    int8: Path | None = None
    int8_card: ModelCard | None = None
    # (bundle file, variant name, requirements the device's profile must meet)
    bundles: list[tuple[Path, str, dict[str, Any]]] = field(default_factory=list)
    server: DemoServer | None = None
    fleet: DemoFleet | None = None
    fleet_size: int = 100  # the closed loop's fleet
    loop: LoopState | None = None

    def close(self) -> None:
        """Stop the fleets, then the servers, if a stage started them (cleanup; never raises)."""
        if self.fleet is not None:
            self.fleet.close()
        if self.loop is not None and self.loop.fleet is not None:
            self.loop.fleet.close()
        if self.server is not None:
            self.server.stop()
        if self.loop is not None and self.loop.server is not None:
            self.loop.server.stop()


@dataclass(frozen=True)
class Stage:
    """One named step of the demo: ``run(context)`` -> (summary, figures)."""

    name: str
    run: Callable[[DemoContext], StageResult]


def need(value: T | None, what: str) -> T:
    """``value``, or one line saying which earlier stage should have made it."""
    if value is None:
        raise InputError(f"demo stage order: {what} is not there yet (an earlier stage makes it)")
    return value
