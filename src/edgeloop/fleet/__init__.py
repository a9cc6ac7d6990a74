"""The fleet server: enrollment, signed assignments, TUF repository, telemetry and inventory.

Service layer (FastAPI, SQLAlchemy). ``create_app(FleetSettings(db_url, data_dir))`` is the
whole server; ``edgeloop server`` runs it on uvicorn. The wire protocol lives in
``edgeloop.protocol`` (shared with the agent) and docs/fleet-protocol.md. The director is a
pure function (:func:`direct`) whose ``policy`` hook staged rollouts override.
"""

from __future__ import annotations

from edgeloop.fleet._app import app_from_env, create_app
from edgeloop.fleet._autoheal import (
    AUTOHEAL_ACTIONS,
    AutohealState,
    autoheal_actions,
    autoheal_history,
    autoheal_paused_models,
    autoheal_run,
    autoheal_runs,
    autoheal_state,
    claim_autoheal_job,
    end_autoheal_run,
    record_autoheal_action,
    record_autoheal_step,
    renew_autoheal_lease,
    set_autoheal_model_paused,
    set_autoheal_paused,
    start_autoheal_run,
    take_over_autoheal_run,
)
from edgeloop.fleet._director import (
    DeviceState,
    FleetState,
    Policy,
    default_policy,
    device_model,
    direct,
    select_variant,
    variant_fits,
)
from edgeloop.fleet._gates import (
    MONITOR_METRICS,
    DeviceSample,
    Gate,
    GateOptions,
    GateResult,
    evaluate_gate,
    evaluate_group_gate,
    parse_gate,
)
from edgeloop.fleet._http import ServerContext
from edgeloop.fleet._settings import (
    SETTINGS_ENV,
    FleetSecrets,
    FleetSettings,
    prepare_data_dir,
    settings_to_env,
)
from edgeloop.fleet._state import AppState, PolicyLoader

__all__ = [
    "AUTOHEAL_ACTIONS",
    "AutohealState",
    "autoheal_actions",
    "autoheal_history",
    "autoheal_paused_models",
    "autoheal_run",
    "autoheal_runs",
    "autoheal_state",
    "claim_autoheal_job",
    "end_autoheal_run",
    "record_autoheal_step",
    "record_autoheal_action",
    "renew_autoheal_lease",
    "set_autoheal_model_paused",
    "set_autoheal_paused",
    "start_autoheal_run",
    "take_over_autoheal_run",
    "SETTINGS_ENV",
    "AppState",
    "DeviceSample",
    "DeviceState",
    "FleetSecrets",
    "FleetSettings",
    "FleetState",
    "Gate",
    "GateOptions",
    "MONITOR_METRICS",
    "GateResult",
    "Policy",
    "PolicyLoader",
    "ServerContext",
    "app_from_env",
    "create_app",
    "default_policy",
    "device_model",
    "direct",
    "evaluate_gate",
    "evaluate_group_gate",
    "parse_gate",
    "prepare_data_dir",
    "select_variant",
    "settings_to_env",
    "variant_fits",
]
