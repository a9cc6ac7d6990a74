"""Telling the policy's webhook what the unattended loop did: one JSON POST per action, with a
timeout; a webhook that fails never stops the loop, the failure goes to the audit log."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from edgeloop.loop._policy import Policy

__all__ = ["notify_webhook"]


def notify_webhook(policy: Policy, event: Mapping[str, Any]) -> str | None:
    """POST ``event`` as JSON to the policy's webhook; None when it answered 2xx (or there is
    no webhook), else one line saying what went wrong (for the audit log's ``notify_failed``)."""
    if not policy.webhook_url:
        return None
    body = json.dumps({"source": "edgeloop-autoheal", **event}, default=str)
    try:
        r = httpx.post(policy.webhook_url, content=body, timeout=policy.webhook_timeout_s,
                       headers={"content-type": "application/json"}, follow_redirects=False)
    except httpx.HTTPError as e:
        return f"webhook {policy.webhook_url}: {type(e).__name__}: {str(e)[:200]}"
    if not 200 <= r.status_code < 300:
        return f"webhook {policy.webhook_url}: HTTP {r.status_code}"
    return None
