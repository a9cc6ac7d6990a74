"""The closed loop (orchestration layer): from a monitoring alert to a healed cohort.

::

    fleet = FleetAccess(url, admin_token, db_url, data, keys=data / "keys", repo=data / "tuf")
    job = fleet.monitor().claim_job("finetune", worker="heal-1")   # an alert queued it
    result = heal(job, fleet, DatasetCohort(x, y, devices_n=20), HealPlan(rounds=5))
    result.version, result.rollout, result.deltas                  # the job's result

:func:`heal` fine-tunes the head of ``job``'s model over the cohort's devices with Flower
(labels only from delayed feedback), gates the candidate with federated evaluation, registers it
with a lineage naming the alert event and the job and a monitoring reference re-baselined on
the data it was tuned on, re-fits it under the base's budget (the base's recipe), packs, signs
and releases it with deltas from the versions in the field, rolls it out to the cohort in
stages gated on accuracy and errors, and finishes the job. :func:`heal_next` claims the next
queued job first. ``edgeloop heal worker`` is the CLI.

The auto-heal policy (:func:`load_policy`, ``edgeloop autoheal check POLICY``) says which
alerts the unattended loop acts on: :func:`decide` maps an alert to ``heal``, ``pause`` or
``notify`` (never a fine-tune on broken inputs), :func:`check_limits` applies the kill switch,
the daily rate limit and the cool-down after a failed run; :func:`admission` applies them to
the database (the kill switch, the audit log's runs and failures of the model);
:func:`screen_job` decides what to do with a claimed job and logs it (a job queued by hand,
:func:`is_hand_queued`, is a person's order to heal, under the same limits); :func:`notify_webhook`
tells the policy's webhook.

:class:`AutohealWorker` is the unattended service (``edgeloop server --auto-heal POLICY``,
``edgeloop autoheal worker``): it claims jobs under the policy, one run per cohort at once (a
UNIQUE key in the database), records each heal step (:class:`HealProgress`) and its lease in
the database, and resumes a run whose worker died from its last recorded step.

A policy's ``federation: deployment`` runs the fine-tune as a Flower deployment on the
cohort's agents' SuperNodes (:func:`federate_on_agents`, :class:`SuperLinkAccess`: the
SuperLink, the node keys of the cohort's enrolled devices, the run announced to them, resumed
from its checkpoint by a later attempt of the job) instead of in-process over
:class:`CohortData`.
"""

from edgeloop.loop._admission import admission, is_hand_queued, screen_job
from edgeloop.loop._autoheal import AutohealWorker, LeaseLost
from edgeloop.loop._federation import (
    FEDERATIONS,
    SuperLinkAccess,
    announce_run,
    cohort_labels,
    enrolled_bindings,
    federate_on_agents,
    stop_federations,
)
from edgeloop.loop._heal import (
    DEFAULT_GATES,
    EST_MARGIN,
    CohortData,
    DatasetCohort,
    FleetAccess,
    HealPlan,
    HealProgress,
    HealResult,
    heal,
    heal_next,
    shift_inputs,
)
from edgeloop.loop._policy import (
    Decision,
    Policy,
    Rule,
    alert_facts,
    check_limits,
    decide,
    load_policy,
    parse_policy,
)
from edgeloop.loop._webhook import notify_webhook

__all__ = [
    "admission",
    "AutohealWorker",
    "DEFAULT_GATES",
    "EST_MARGIN",
    "FEDERATIONS",
    "CohortData",
    "Decision",
    "DatasetCohort",
    "FleetAccess",
    "HealPlan",
    "HealProgress",
    "HealResult",
    "LeaseLost",
    "Policy",
    "Rule",
    "SuperLinkAccess",
    "alert_facts",
    "announce_run",
    "check_limits",
    "cohort_labels",
    "decide",
    "enrolled_bindings",
    "federate_on_agents",
    "heal",
    "heal_next",
    "is_hand_queued",
    "load_policy",
    "notify_webhook",
    "parse_policy",
    "screen_job",
    "shift_inputs",
    "stop_federations",
]
