"""The demo's stages in order; the names are the steps of ``demo.json``.

A longer loop (drift, detect, federated fine-tune, re-fit, delta rollout, heal) adds stages
here or passes its own list to :func:`~edgeloop.demo.run_demo`.
"""

from __future__ import annotations

from edgeloop.demo import _build, _fleet, _loop, _publish, _rollout
from edgeloop.demo._context import Stage

__all__ = ["LOOP_STAGES", "STAGES"]

STAGES: tuple[Stage, ...] = (
    Stage("profile", _build.profile),
    Stage("train", _build.train),
    Stage("export", _build.export),
    Stage("optimize", _build.optimize),
    Stage("benchmark", _build.benchmark),
    Stage("server", _publish.start_server),
    Stage("bundle", _publish.bundle),
    Stage("registry", _publish.push),
    Stage("publish", _publish.publish),
    Stage("fleet", _fleet.start_fleet),
    Stage("rollout", _rollout.roll_out_good),
    Stage("rollback", _rollout.roll_back_bad),
    Stage("telemetry", _fleet.telemetry),
)

# The closed loop (``edgeloop demo``'s default), after STAGES: a monitored fleet of its own,
# drift on a fifth of it, detection, the heal pipeline (a bad fix rolled back, then the fix),
# the cohort healed.
LOOP_STAGES: tuple[Stage, ...] = (
    Stage("loop-fleet", _loop.start_loop),
    Stage("loop-drift", _loop.drift),
    Stage("loop-detect", _loop.detect),
    Stage("loop-heal", _loop.heal),
    Stage("loop-healed", _loop.healed),
)
