"""``MonitorClient``: the fleet server's monitoring API (``/v1/admin/monitor``) over HTTP.

::

    mon = MonitorClient("http://127.0.0.1:8700", admin_token)
    mon.status("kws")                              # alerts (active first) and recent events
    mon.evaluate()                                 # evaluate every version now
    mon.report("kws", 3, cohort="region=north", since="6h")
    html = mon.report_html("kws", 3)               # the report page (plots embedded)
    job = mon.claim_job("finetune", worker="trainer-1")  # a job an alert queued, or None
    mon.finish_job(job["id"], {"version": 4})           # succeeded (ok=False: failed)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from edgeloop.client._admin import AdminClient
from edgeloop.client._errors import raise_for_status, unreachable
from edgeloop.errors import InputError

__all__ = ["MonitorClient", "parse_target"]

_BASE = "/v1/admin/monitor"


def parse_target(text: str) -> tuple[str, int]:
    """``MODEL@VERSION`` -> (model, version)."""
    model, sep, version = text.rpartition("@")
    if not sep or not model or not version.isdigit():
        raise InputError(f"{text!r}: expected MODEL@VERSION, e.g. kws@3")
    return model, int(version)


def _query(values: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in values.items() if v is not None}
    return "?" + urlencode(kept) if kept else ""


class MonitorClient(AdminClient):
    """Alerts, evaluations, reports and references of the fleet's monitoring."""

    def status(self, model: str | None = None, version: int | None = None) -> dict[str, Any]:
        return dict(self.call("GET", f"{_BASE}/status" + _query(
            {"model": model, "version": version})))

    def evaluate(self, model: str | None = None, version: int | None = None,
                 force: bool = False) -> list[dict[str, Any]]:
        body = {"model": model, "version": version, "force": force}
        return list(self.call("POST", f"{_BASE}/evaluate", body)["results"])

    def _report_path(self, model: str, version: int) -> str:
        return f"{_BASE}/report/{quote(model, safe='')}/{version}"

    def report(self, model: str, version: int, *, cohort: str | None = None,
               since: str | None = None) -> dict[str, Any]:
        q = _query({"cohort": cohort, "since": since})
        return dict(self.call("GET", self._report_path(model, version) + q))

    def report_html(self, model: str, version: int, *, cohort: str | None = None,
                    since: str | None = None) -> str:
        path = self._report_path(model, version) + "/html" + _query(
            {"cohort": cohort, "since": since})
        try:
            r = httpx.get(self.base + path, headers=self.headers, timeout=self.timeout_s)
        except httpx.HTTPError as e:
            raise unreachable(self.base, e) from e
        raise_for_status("GET", path, r)
        return r.text

    def references(self, model: str, version: int) -> list[dict[str, Any]]:
        path = f"{_BASE}/references/{quote(model, safe='')}/{version}"
        return list(self.call("GET", path)["references"])

    def rebaseline(self, model: str, version: int, reference: Mapping[str, Any],
                   reason: str) -> dict[str, Any]:
        """Give ``model@version`` a new monitoring reference (recorded with ``reason``)."""
        path = f"{_BASE}/references/{quote(model, safe='')}/{version}"
        return dict(self.call("POST", path, {"reference": dict(reference), "reason": reason}))

    # --- jobs an alert queued (fine-tuning): what a worker claims and finishes ---------------
    def jobs(self, *, kind: str | None = None, state: str | None = None,
             model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Monitoring jobs, newest first."""
        q = _query({"kind": kind, "state": state, "model": model, "limit": limit})
        return list(self.call("GET", f"{_BASE}/jobs{q}")["jobs"])

    def queue_job(self, model: str, version: int, *, cohort: str = "*",
                  kind: str = "finetune", reason: str = "queued by an admin") -> dict[str, Any]:
        """Queue a job by hand (an open one for the same model, version and cohort is
        returned instead of a second)."""
        body = {"kind": kind, "model": model, "version": version, "cohort": cohort,
                "reason": reason}
        return dict(self.call("POST", f"{_BASE}/jobs", body)["job"])

    def claim_job(self, kind: str = "finetune", *, worker: str = "worker",
                  lease_s: float = 3600.0) -> dict[str, Any] | None:
        """The oldest queued job of ``kind``, now running for ``worker``; None when none is
        queued. Finish it within ``lease_s`` or another worker may claim it again."""
        body = {"kind": kind, "worker": worker, "lease_s": lease_s}
        job = self.call("POST", f"{_BASE}/jobs/claim", body)["job"]
        return None if job is None else dict(job)

    def finish_job(self, job_id: int, result: Mapping[str, Any], *, ok: bool = True,
                   worker: str | None = None) -> dict[str, Any]:
        """Mark a claimed job ``succeeded`` (``ok``) or ``failed``, with its ``result`` (a
        JSON object: the new version, metrics, the error)."""
        body: dict[str, Any] = {"state": "succeeded" if ok else "failed", "result": dict(result)}
        if worker is not None:
            body["worker"] = worker
        return dict(self.call("POST", f"{_BASE}/jobs/{int(job_id)}/finish", body)["job"])
