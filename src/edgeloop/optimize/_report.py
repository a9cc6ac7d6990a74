"""The optimize report: ``report.json``, a self-contained ``report.html`` and ``report.png``.

Every step (the original first) is one row: size, MACs, latency p50, the metric or similarity,
and the change from the original. The HTML embeds the plot as a data URI: no CDN, no external
file, so it can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from edgeloop._io import atomic_write_bytes, atomic_write_text
from edgeloop.artifacts import ModelCard
from edgeloop.optimize._measure import Budget

__all__ = ["summary_rows", "write_report"]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the change from the original filled in."""
    base = rows[0]
    out = []
    for r in rows:
        s = {
            k: r.get(k)
            for k in (
                "step",
                "seconds",
                "size_bytes",
                "macs",
                "params",
                "nodes",
                "latency_ms_p50",
                "metric",
                "metric_name",
                "cosine_min",
                "cosine_mean",
                "sqnr_min_db",
                "sqnr_mean_db",
            )
        }
        s["size_ratio"] = _ratio(base["size_bytes"], r["size_bytes"])
        s["speedup"] = _ratio(base.get("latency_ms_p50"), r.get("latency_ms_p50"))
        s["metric_change"] = (
            None
            if r.get("metric") is None or base.get("metric") is None
            else r["metric"] - base["metric"]
        )
        s["warnings"] = list(r.get("warnings") or [])
        s["details"] = r.get("details") or {}
        out.append(s)
    return out


def _plot(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["step"] for r in rows]
    x = range(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].bar(x, [r["size_bytes"] / 1e6 for r in rows], color="#4c72b0")
    axes[0].set_title("size (MB)")
    axes[1].bar(x, [r.get("latency_ms_p50") or 0 for r in rows], color="#dd8452")
    axes[1].set_title("latency p50 (ms, batch 1, 1 thread)")
    if any(r.get("metric") is not None for r in rows):
        axes[2].plot(x, [r.get("metric") for r in rows], "o-", color="#55a868")
        axes[2].set_title(str(rows[0].get("metric_name") or "metric"))
    else:
        axes[2].plot(x, [r.get("cosine_min") for r in rows], "o-", color="#55a868")
        axes[2].set_title("min cosine vs original")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _fmt(v: Any, kind: str = "") -> str:
    if v is None:
        return "-"
    if kind == "bytes":
        return f"{v / 1e6:.3f} MB" if v >= 1e5 else f"{v / 1e3:.1f} kB"
    if kind == "x":
        return f"{v:.2f}x"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def _html(card: ModelCard, rows: list[dict[str, Any]], meta: dict[str, Any], png: bytes) -> str:
    head = (
        "step",
        "size",
        "size ratio",
        "MACs",
        "latency p50 (ms)",
        "speedup",
        "metric",
        "change",
        "min cosine",
        "min SQNR (dB)",
        "seconds",
    )
    body = []
    for r in rows:
        cells = (
            r["step"],
            _fmt(r["size_bytes"], "bytes"),
            _fmt(r["size_ratio"], "x"),
            _fmt(r["macs"]),
            _fmt(r["latency_ms_p50"]),
            _fmt(r["speedup"], "x"),
            _fmt(r["metric"]),
            _fmt(r["metric_change"]),
            _fmt(r["cosine_min"]),
            _fmt(r["sqnr_min_db"]),
            _fmt(r["seconds"]),
        )
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    notes = []
    for r in rows:
        for w in r["warnings"]:
            notes.append(f"<li><b>{html.escape(r['step'])}</b>: {html.escape(w)}</li>")
    details = html.escape(
        json.dumps([{r["step"]: r["details"]} for r in rows[1:]], indent=2, default=str)
    )
    status = html.escape(meta["budget_status"])
    lineage = "".join(
        f"<li>{html.escape(ref.role)}: <code>{ref.sha256[:16]}</code> "
        f"{html.escape(ref.name or '')}</li>"
        for ref in card.lineage
    )
    png64 = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgeloop optimize: {html.escape(card.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child{{text-align:left}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style>
</head><body>
<h1>edgeloop optimize: {html.escape(card.name)}</h1>
<p>recipe <b>{html.escape(card.recipe.name if card.recipe else "")}</b> on data
<b>{html.escape(str(meta["data"]))}</b>; budget: {status}; took {meta["seconds"]:.1f} s.</p>
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{"".join(body)}</table>
<p><img alt="size, latency and quality per step" src="data:image/png;base64,{png64}"></p>
<h2>Warnings</h2><ul>{"".join(notes) or "<li>none</li>"}</ul>
<h2>Lineage</h2><ul>{lineage}</ul>
<h2>Step details</h2><pre>{details}</pre>
</body></html>
"""


def write_report(
    out: Path,
    card: ModelCard,
    rows: list[dict[str, Any]],
    budget: Budget,
    miss: dict[str, float],
    seconds: float,
    data_name: str,
) -> dict[str, Any]:
    summary = summary_rows(rows)
    if not budget:
        status = "none given"
    elif miss:
        status = "MISSED: " + budget.describe(miss)
    else:
        status = "met"
    meta = {"budget_status": status, "seconds": seconds, "data": data_name}
    report = {
        "model": str(out / "model.onnx"),
        "card": card.to_dict(),
        "budget": {
            "max_drop": budget.max_drop,
            "min_cosine": budget.min_cosine,
            "min_sqnr": budget.min_sqnr,
            "met": not miss,
            "shortfall": miss,
        },
        "seconds": round(seconds, 3),
        "data": data_name,
        "steps": summary,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    png = _plot(summary)
    atomic_write_bytes(out / "report.png", png)
    atomic_write_text(out / "report.html", _html(card, summary, meta, png))
    return report
