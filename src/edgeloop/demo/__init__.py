"""``edgeloop demo``: the whole loop on embedded defaults, as a list of stages.

profile this machine -> train a CNN on scikit-learn's digits -> export to ONNX with a parity
check -> optimize to int8 within an accuracy budget -> benchmark both -> start a fleet server on
127.0.0.1 (SQLite, local files) -> pack signed, encrypted bundles (fp32, and int8 for CPUs with
VNNI) -> push them to the registry with their lineage -> publish through TUF -> a simulated
fleet of real agents enrolls, downloads, verifies, self-tests and serves -> a staged rollout of
v2 passes its health gates -> a bad v3 fails its gate and every device goes back to v2 from its
known-good slot. With ``closed_loop`` (the default; ``edgeloop demo --no-closed-loop`` stops
before it) the closed loop follows
(``_loop``, :data:`LOOP_STAGES`): a monitored fleet, drift on a fifth of it, detection from
sketches, the heal pipeline (:mod:`edgeloop.loop`), a bad fix rolled back, the cohort healed.

Orchestration layer: it calls build and service code alike through their public APIs, each
imported inside the stage that needs it. The runner (``_runner``) passes one
:class:`DemoContext` from stage to stage and records each stage's summary and figures in
``demo.json``; each stage is a function ``(DemoContext) -> (summary, figures)`` in a module of
its own kind: ``_build`` (profile, train, export, quantize, benchmark), ``_publish`` (server,
bundles, registry, TUF), ``_fleet`` (simulated agents, telemetry), ``_rollout`` (v2 out, bad
v3 rolled back). :data:`STAGES` lists them in order. Every file lands under ``workdir``.
``_report`` says what a newcomer needs beyond the figures: which variant each simulated device
got and which this host would get, and (``demo.json``'s ``next``) how to serve the fleet
again, where its dashboard and admin token are, and the commands to try next.
``_loop_report`` renders a closed-loop run's ``demo.json`` into ``report.html`` beside it
(timeline, figures, plots as PNG data URIs, the fix's lineage).
"""

from edgeloop.demo._context import (
    BAD_ERROR_SHARE,
    BAD_VERSION,
    MODEL,
    DemoContext,
    DemoResult,
    DemoStep,
    Stage,
    StageResult,
)
from edgeloop.demo._fleet import DemoFleet
from edgeloop.demo._loop import LOOP_MODEL, LoopState
from edgeloop.demo._report import (
    DOT_PRODUCT_ISA,
    NEXT_PORT,
    next_steps,
    render_next,
    variant_report,
)
from edgeloop.demo._runner import run_demo, run_stages
from edgeloop.demo._server import DemoServer
from edgeloop.demo._stages import LOOP_STAGES, STAGES
from edgeloop.demo._tls import LocalCA, make_local_ca

__all__ = [
    "BAD_ERROR_SHARE",
    "BAD_VERSION",
    "DOT_PRODUCT_ISA",
    "LOOP_MODEL",
    "LOOP_STAGES",
    "MODEL",
    "NEXT_PORT",
    "STAGES",
    "DemoContext",
    "DemoFleet",
    "DemoResult",
    "DemoServer",
    "DemoStep",
    "LocalCA",
    "LoopState",
    "Stage",
    "StageResult",
    "make_local_ca",
    "next_steps",
    "render_next",
    "run_demo",
    "run_stages",
    "variant_report",
]
