"""The device agent: enroll, poll, download through TUF, verify, install into A/B slots, serve.

::

    image = load_provisioning("device.json")   # edgeloop.protocol; `edgeloop fleet provision`
    agent = Agent(None, "/var/lib/edgeloop", provisioning=image)
    asyncio.run(agent.poll_once())       # one check-in (or agent.run() until stopped)
    agent.predict({"x": array})          # serve the active model
    agent.feedback(prediction_id, label)  # a delayed label (agent.predict_tracked gives ids)
    agent.personalize()                  # a personal head on those labels (``_personal``)
    LocalServer(agent.predict_with_version, agent.status, port=8701,
                feedback=agent.feedback).start()

The pure parts (``decide``, ``Backoff``, ``Telemetry``) take values and return values; the
simulator (``edgeloop.agent.simulator``) runs many agents in one process.
"""

from edgeloop.agent._agent import AGENT_VERSION, Agent
from edgeloop.agent._backoff import Backoff
from edgeloop.agent._http import LocalServer
from edgeloop.agent._integrity import (
    Attestation,
    Attestor,
    SoftwareAttestor,
    TpmAttestor,
    expected_pcr,
    package_build_hash,
    verify_quote,
)
from edgeloop.agent._models import LoadedModel, ModelCache
from edgeloop.agent._monitoring import Monitoring
from edgeloop.agent._personal import (
    PersonalConfig,
    PersonalHead,
    PersonalMismatch,
    fit_personal,
    load_personal,
    personal_key,
)
from edgeloop.agent._simulator import (
    InputSource,
    SimulationResult,
    Simulator,
    covariate_shift,
    simulated_profiles,
)
from edgeloop.agent._state import AgentState, Decision, SlotInfo, decide
from edgeloop.agent._store import StateDir
from edgeloop.agent._telemetry import Telemetry

__all__ = [
    "AGENT_VERSION",
    "Agent",
    "AgentState",
    "Attestation",
    "Attestor",
    "Backoff",
    "Decision",
    "InputSource",
    "LoadedModel",
    "LocalServer",
    "ModelCache",
    "Monitoring",
    "PersonalConfig",
    "PersonalHead",
    "PersonalMismatch",
    "SimulationResult",
    "Simulator",
    "SlotInfo",
    "SoftwareAttestor",
    "StateDir",
    "Telemetry",
    "TpmAttestor",
    "covariate_shift",
    "decide",
    "expected_pcr",
    "fit_personal",
    "load_personal",
    "package_build_hash",
    "personal_key",
    "simulated_profiles",
    "verify_quote",
]
