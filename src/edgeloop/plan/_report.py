"""The planner's HTML report: the budget, every candidate in order, its figures and verdict."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop._io import atomic_write_text

if TYPE_CHECKING:
    from edgeloop.plan._plan import PlanResult

__all__ = ["write_report"]

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:72em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.chosen{background:#e8f6e8}
.screened{color:#777}.rejected,.failed{background:#fdf0f0}small{color:#666}
"""


def _fig(fig: dict[str, Any] | None) -> str:
    if not fig:
        return "-"
    parts = []
    if fig.get("latency_ms") is not None:
        parts.append(f"{fig['latency_ms']:.3f} ms")
    if fig.get("peak_memory_bytes") is not None:
        parts.append(f"{fig['peak_memory_bytes'] / 2**20:.2f} MB RAM")
    if fig.get("size_bytes") is not None:
        parts.append(f"{fig['size_bytes'] / 1024:.1f} KB")
    if fig.get("accuracy") is not None:
        parts.append(f"acc {fig['accuracy']:.4f}")
    if fig.get("energy_mj") is not None:
        parts.append(f"{fig['energy_mj']:.3f} mJ")
    return html.escape(", ".join(parts))


def write_report(result: PlanResult, dest: Path) -> Path:
    rows = []
    for i, c in enumerate(result.candidates, 1):
        rows.append(
            f"<tr class='{html.escape(c.status)}'><td>{i}</td><td>{html.escape(c.name)}</td>"
            f"<td>{html.escape(c.work)}</td><td>{_fig(c.predicted)}</td>"
            f"<td>{_fig(c.measured)}</td><td><b>{html.escape(c.status)}</b></td>"
            f"<td>{html.escape('; '.join(c.reasons)) or '-'}</td></tr>"
        )
    verdict = (
        f"chose <b>{html.escape(result.chosen.name)}</b>: {html.escape(str(result.model))}"
        if result.chosen is not None
        else "<b>nothing fits the budget</b>"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>edgeloop fit: {html.escape(result.target)}</title><style>{_STYLE}</style></head><body>
<h1>edgeloop fit</h1>
<p>Target <b>{html.escape(result.target)}</b>,
budget <b>{html.escape(result.budget.describe())}</b>, from {html.escape(result.source)}.</p>
<p>{verdict}. The cost model screened {result.spared} of {len(result.candidates)} candidates
before any training or quantization; {result.seconds:.1f} s in all.</p>
<table><tr><th>#</th><th>candidate</th><th>work</th><th>predicted (cost model)</th>
<th>measured</th><th>verdict</th><th>why</th></tr>
{"".join(rows)}
</table>
<p><small>Candidates are tried in order of expected cost. Predicted figures come from the cost
model on the unoptimized graph (pruning scaled by the kept share of channels); measured ones from
the produced model: accuracy on held-out data, size of the file, peak memory from the cost model,
latency timed here when the target is this machine, else the cost model on the produced graph.
</small></p></body></html>
"""
    atomic_write_text(dest, page)
    return dest
