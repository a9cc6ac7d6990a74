"""The monitoring HTML report: plots over time per feature and per cohort, the latest tests and
the alerts of one version. Matplotlib (Agg) draws PNGs embedded as data URIs, so the page is
one self-contained file (no JS, no CDN) that can be saved or mailed."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from datetime import datetime
from html import escape
from typing import Any

__all__ = ["render_report"]

_MAX_FEATURE_LINES = 12


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plot(title: str, ylabel: str, series: dict[str, list[tuple[datetime, float]]],
          hline: float | None = None) -> str | None:
    if not any(series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    for name, pts in series.items():
        if pts:
            xs: list[Any] = [p[0] for p in pts]  # matplotlib plots datetimes on a date axis
            ax.plot(xs, [p[1] for p in pts], marker="o", ms=3, label=name)
    if hline is not None:
        ax.axhline(hline, color="grey", ls="--", lw=1)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.autofmt_xdate()
    return _png(fig)


def _img(src: str | None, alt: str) -> str:
    if src is None:
        return f"<p class='empty'>{escape(alt)}: no evaluations yet</p>"
    return f'<img class="plot" alt="{escape(alt)}" src="{src}">'


def render_report(data: dict[str, Any]) -> str:
    """``data``: what ``Monitor.report_data(..., every_cohort=True)`` returns."""
    model, version, cohort = data["model"], data["version"], data["cohort"]
    rows = data["evaluations"]
    per_feature: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    accuracy: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    per_cohort: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for r in rows:
        at = datetime.fromisoformat(r["at"])
        if "drift_psi_max" in r["metrics"]:
            per_cohort[r["cohort"]].append((at, r["metrics"]["drift_psi_max"]))
        if r["cohort"] != cohort:
            continue
        for name, test in r["report"].get("features", {}).items():
            per_feature[name].append((at, float(test.get("psi", 0.0))))
        for key, metric in (("estimated", "est_accuracy"), ("realized", "realized_accuracy")):
            if metric in r["metrics"]:
                accuracy[key].append((at, r["metrics"][metric]))
    top = dict(sorted(per_feature.items(), key=lambda kv: -max(v for _, v in kv[1]))
               [:_MAX_FEATURE_LINES])
    parts = [
        f"<h1>Monitoring report: {escape(model)}@{version}</h1>",
        f"<p>Cohort <b>{escape(cohort)}</b>, evaluations since {escape(data['since'])}: "
        f"{sum(1 for r in rows if r['cohort'] == cohort)}.</p>",
        "<h2>Alerts</h2>", _alerts(data["alerts"]),
        "<h2>Drift per feature (PSI)</h2>",
        _img(_plot(f"PSI per feature, cohort {cohort}", "PSI", top, hline=0.1), "PSI"),
        "<h2>Accuracy</h2>",
        _img(_plot("estimated (CBPE) and realized accuracy", "accuracy", accuracy), "accuracy"),
        "<h2>Drift per cohort (largest feature PSI)</h2>",
        _img(_plot("drift_psi_max per cohort", "PSI", dict(per_cohort), hline=0.1), "cohorts"),
        "<h2>Latest tests</h2>", _latest(data.get("latest")),
        _segments(data.get("latest")),
    ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
             ".drifted{background:#fdd}.active{background:#fdd}img.plot{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>monitor {escape(model)}@"
            f"{version}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>")


def _alerts(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return "<p>No alerts.</p>"
    rows = "".join(
        f"<tr class='{'active' if a['active'] else ''}'><td>{escape(a['cohort'])}</td>"
        f"<td>{'ACTIVE' if a['active'] else 'clear'}</td><td>{escape(str(a['since'] or ''))}"
        f"</td><td>{escape(', '.join(a['detail'].get('drifted', [])))}</td></tr>"
        for a in alerts)
    return ("<table id='alerts'><tr><th>cohort</th><th>state</th><th>since</th>"
            f"<th>drifted</th></tr>{rows}</table>")


def _latest(latest: dict[str, Any] | None) -> str:
    if latest is None:
        return "<p>No evaluation of this cohort yet.</p>"
    feats = latest["report"].get("features", {})
    rows = "".join(
        f"<tr class='{'drifted' if t.get('drifted') else ''}'><td>{escape(name)}</td>"
        f"<td>{t.get('psi', 0):.3f}</td><td>{t.get('js', 0):.3f}</td>"
        f"<td>{t.get('wasserstein', 0):.3f}</td><td>{t.get('p_adj', 1):.2g}</td>"
        f"<td>{t.get('n', 0):.0f}</td></tr>"
        for name, t in feats.items())
    m = latest["metrics"]
    acc = ", ".join(f"{k} {m[k]:.3f}" for k in ("est_accuracy", "realized_accuracy") if k in m)
    return (f"<p>{escape(latest['at'])}: {latest['report'].get('devices', 0)} devices, "
            f"{latest['report'].get('n', 0):.0f} rows. {escape(acc)}</p>"
            "<table id='tests'><tr><th>feature</th><th>PSI</th><th>JS</th><th>Wasserstein</th>"
            f"<th>p (BH)</th><th>n</th></tr>{rows}</table>")


def _segments(latest: dict[str, Any] | None) -> str:
    """Bias: per segment of each label, estimated and realized accuracy (the fleet-wide
    cohort's report), and the largest gap with its 95 % interval."""
    segs = (latest or {}).get("report", {}).get("segments") or {}
    parts = []
    for label, body in segs.items():
        rows = "".join(
            f"<tr><td>{escape(value)}</td>"
            + "".join(f"<td>{m[k]['value']:.3f} [{m[k]['low']:.3f}, {m[k]['high']:.3f}]</td>"
                      if k in m else "<td>-</td>"
                      for k in ("est_accuracy", "realized_accuracy"))
            + "</tr>"
            for value, m in body.get("segments", {}).items())
        gaps = "; ".join(f"largest {g['metric']} gap: {g['high_segment']} - "
                         f"{g['low_segment']} = {g['gap']:.3f} [{g['low']:.3f}, "
                         f"{g['high']:.3f}]" for g in body.get("gaps", []) if "metric" in g)
        parts.append(f"<h3>by {escape(label)}</h3><table class='segments'><tr><th>segment</th>"
                     f"<th>est. accuracy</th><th>realized</th></tr>{rows}</table>"
                     f"<p>{escape(gaps)}</p>")
    return "<h2>Segments (bias)</h2>" + "".join(parts) if parts else ""
