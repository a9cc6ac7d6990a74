"""The closed loop's report: ``report.html`` rendered from the demo's recorded ``demo.json``.

The page shows the timeline, every stage's summary and figures, and plots (PNG data URIs, so
the file stands alone): the timeline's events over time, the accuracy the cohort was estimated
and measured at over time, drift per feature over time by cohort, and the bytes each rollout
stage's devices downloaded against the full bundle; then the fix's lineage (the heal's chain,
and the registry's lineage walked back to the training data set and its sha256) and where
the bytes of the fix's delta go. Values in, text out:
a recorded ``demo.json`` is enough to render it again.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeloop._io import atomic_write_text
from edgeloop.errors import InputError

__all__ = ["render_loop_report", "write_loop_report"]


def _steps(demo: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    steps = demo.get("steps")
    if not isinstance(steps, list):
        raise InputError("loop report: demo.json has no 'steps' list")
    return {str(s.get("name")): s for s in steps if isinstance(s, dict)}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _plots(
    timeline: Sequence[Mapping[str, Any]], healed: Mapping[str, Any]
) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[tuple[str, str]] = []
    onset = next((_num(e.get("t_s")) for e in timeline if e.get("event") == "drift onset"), None)

    fig, ax = plt.subplots(figsize=(7.0, 0.35 * max(len(timeline), 4) + 1.0), dpi=100)
    for i, e in enumerate(timeline):
        t = _num(e.get("t_s")) or 0.0
        ax.plot([t], [i], "o", color="#4c72b0")
        ax.annotate(
            str(e.get("event")), (t, i), xytext=(6, -3), textcoords="offset points", fontsize=8
        )
    if onset is not None:
        ax.axvline(onset, color="#c44e52", linestyle="--", label="drift onset")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the loop started")
    ax.set_title("timeline")
    fig.tight_layout()
    out.append(("timeline", _png(fig)))

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    series: dict[str, list[tuple[float, float]]] = {
        "realized (delayed labels)": [],
        "estimated (label-free)": [],
    }
    for e in timeline:
        when = _num(e.get("t_s"))
        if when is None:
            continue
        if _num(e.get("realized_accuracy")) is not None:
            series["realized (delayed labels)"].append((when, float(e["realized_accuracy"])))
        if _num(e.get("est_accuracy")) is not None:
            series["estimated (label-free)"].append((when, float(e["est_accuracy"])))
    for (label, pts), marker in zip(series.items(), ("o-", "s--"), strict=True):
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, label=label)
    if onset is not None:
        ax.axvline(onset, color="#c44e52", linestyle="--", label="drift onset")
    ax.set_xlabel("seconds since the loop started")
    ax.set_ylabel("accuracy of the drifted cohort")
    ax.legend(fontsize=8)
    ax.set_title("estimated vs realized accuracy")
    fig.tight_layout()
    out.append(("accuracy", _png(fig)))

    out.append(("drift", _drift_plot(plt, healed, onset)))

    shipped = [s for s in healed.get("shipped") or [] if isinstance(s, dict)]
    full = _num(healed.get("full_bundle_bytes"))
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    labels = [f"stage {s.get('stage')} ({s.get('percent')} %)" for s in shipped]
    per = [(_num(s.get("bytes")) or 0.0) / max(_num(s.get("devices")) or 0.0, 1.0) for s in shipped]
    ax.bar(labels or ["(none)"], per or [0.0], color="#55a868", label="bytes per device")
    if full:
        ax.axhline(full, color="#c44e52", linestyle="--", label=f"full bundle ({full:,.0f} B)")
    ax.set_ylabel("bytes downloaded per device")
    ax.legend(fontsize=8)
    ax.set_title("the fix's rollout: bytes shipped per device by stage")
    fig.tight_layout()
    out.append(("bytes", _png(fig)))
    return out


PSI_CAP = 1.0  # the colour scale's top: a PSI of 0.25 is already a large shift


def _drift_plot(plt: Any, healed: Mapping[str, Any], onset: float | None) -> str:
    """Drift per feature over time, one panel per cohort: each monitoring evaluation's PSI per
    feature against the reference of the version the cohort ran (colour), the features it
    found drifted (x), and in the title the features the cohort's alert named."""
    series = healed.get("drift_series")
    cohorts = {str(k): [e for e in v if isinstance(e, dict)]
               for k, v in (series.items() if isinstance(series, dict) else [])
               if isinstance(v, list)}
    alerts = healed.get("alerts") if isinstance(healed.get("alerts"), dict) else {}
    names = sorted({f for rows in cohorts.values() for e in rows
                    for f in (e.get("psi") or {}) if isinstance(f, str)},
                   key=lambda f: (f.startswith("@"), len(f), f))
    panels = max(len(cohorts), 1)
    fig, axes = plt.subplots(panels, 1, figsize=(7.0, 0.25 * max(len(names), 4) * panels + 2.0),
                             dpi=100, sharex=True, squeeze=False, layout="constrained")
    legend: dict[str, Any] = {}
    art = None
    for ax, (cohort, rows) in zip(axes[:, 0], cohorts.items() or [("(none)", [])], strict=False):
        pts = [(_num(e.get("t_s")), names.index(f), min(float(v), PSI_CAP),
                f in (e.get("drifted") or []))
               for e in rows for f, v in (e.get("psi") or {}).items()
               if f in names and _num(v) is not None and _num(e.get("t_s")) is not None]
        if pts:
            art = ax.scatter([p[0] for p in pts], [p[1] for p in pts],
                             c=[p[2] for p in pts], cmap="Reds", vmin=0.0, vmax=PSI_CAP,
                             marker="s", s=36, edgecolors="#999999", linewidths=0.3)
            hit = [p for p in pts if p[3]]
            ax.scatter([p[0] for p in hit], [p[1] for p in hit], marker="x", s=18,
                       color="black", linewidths=0.8,
                       label="drifted (the server's test)" if hit else None)
        else:
            ax.text(0.5, 0.5, "no evaluations recorded", ha="center", va="center",
                    transform=ax.transAxes)
        versions = sorted({int(e["version"]) for e in rows if _num(e.get("version")) is not None})
        for v in versions[1:]:  # when the cohort's evaluations move to a new version
            t = min(_num(e.get("t_s")) or 0.0 for e in rows if e.get("version") == v)
            ax.axvline(t, color="#55a868", linestyle=":", label=f"v{v}'s reference")
        if onset is not None:
            ax.axvline(onset, color="#c44e52", linestyle="--", label="drift onset")
        named = alerts.get(cohort) if isinstance(alerts, dict) else None
        said = ("no alert" if not isinstance(named, list) else
                f"alert on {', '.join(map(str, named))}" if named else
                "alert, no feature drifted")
        ax.set_title(f"{cohort}: {said}", fontsize=9)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=7)
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, h)
    axes[-1, 0].set_xlabel("seconds since the loop started")
    if art is not None:
        fig.colorbar(art, ax=list(axes[:, 0]), label=f"PSI (capped at {PSI_CAP:g})", shrink=0.8)
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncol=3,
                   fontsize=7)
    fig.suptitle("drift per feature over time, by cohort")
    return _png(fig)


def _lineage_items(node: Mapping[str, Any], depth: int = 0) -> list[str]:
    """The lineage tree (``Registry.lineage(...).to_dict()``) as nested list items."""
    if depth > 12:
        return []
    what = " ".join(str(x) for x in (
        node.get("role"), f"{node.get('model')}@{node.get('version')}" if node.get("model")
        and node.get("version") else None, node.get("name")) if x)
    sha = str(node.get("sha256") or "")
    kids = [c for c in node.get("children") or [] if isinstance(c, dict)]
    inner = "".join(x for c in kids for x in _lineage_items(c, depth + 1))
    cls = " class='training-data'" if node.get("role") == "dataset" else ""
    return [f"<li{cls}>{_esc(what)} <code>sha256 {_esc(sha[:16])}</code>"
            + (f"<ul>{inner}</ul>" if inner else "") + "</li>"]


def _walk(node: Mapping[str, Any], depth: int = 0) -> list[Mapping[str, Any]]:
    kids = [c for c in node.get("children") or [] if isinstance(c, dict)] if depth < 12 else []
    return [node, *(n for c in kids for n in _walk(c, depth + 1))]


def _esc(v: Any) -> str:
    return html.escape(v if isinstance(v, str) else json.dumps(v, default=str))


def render_loop_report(demo: Mapping[str, Any]) -> str:
    """The HTML page for a closed-loop demo's ``demo.json`` (parsed)."""
    steps = _steps(demo)
    healed = steps.get("loop-healed", {}).get("figures") or {}
    timeline = [e for e in healed.get("timeline") or [] if isinstance(e, dict)]
    if not timeline:
        raise InputError(
            "loop report: demo.json has no closed-loop timeline (run `edgeloop demo` without "
            "--no-closed-loop)"
        )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>edgeloop closed loop</title><style>body{font-family:sans-serif;"
        "max-width:60em;margin:2em auto}td,th{border-bottom:1px solid #ddd;padding:2px 6px;"
        "vertical-align:top;font-size:90%}img{max-width:100%}</style></head><body>",
        "<h1>The closed loop</h1>",
    ]
    summary = [
        (
            "seconds from drift onset to 95 % of the cohort healed",
            healed.get("seconds_onset_to_95pct_healed"),
        ),
        ("bytes per device for the fix", healed.get("bytes_per_device")),
        ("full bundle bytes", healed.get("full_bundle_bytes")),
        ("share of the full bundle", healed.get("share_of_full_bundle")),
        ("realized accuracy before the drift", healed.get("realized_accuracy_before")),
        ("realized accuracy on the fix", healed.get("realized_accuracy_after")),
    ]
    parts.append(
        "<table>"
        + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in summary)
        + "</table>"
    )
    for name, uri in _plots(timeline, healed):
        parts.append(
            f"<h2>{_esc(name)}</h2><img class='plot' id='plot-{name}' alt='{name}' src='{uri}'>"
        )
    parts.append(
        "<h2>timeline</h2><table><tr><th>t (s)</th><th>since onset (s)</th>"
        "<th>event</th><th>figures</th></tr>"
    )
    for e in timeline:
        rest = {k: v for k, v in e.items() if k not in ("t_s", "since_onset_s", "event")}
        parts.append(
            f"<tr><td>{_esc(e.get('t_s'))}</td><td>{_esc(e.get('since_onset_s'))}</td>"
            f"<td>{_esc(e.get('event'))}</td><td>{_esc(rest)}</td></tr>"
        )
    parts.append("</table>")
    fix = (steps.get("loop-heal", {}).get("figures") or {}).get("fix") or {}
    if fix:
        train = steps.get("train", {}).get("summary")
        chain = [
            f"v{fix.get('version')} (bundle {fix.get('bundle_bytes')} B, run {fix.get('run_id')})",
            f"fine-tune job {fix.get('job_id')} on cohort {fix.get('cohort')}",
            f"drift alert event {fix.get('event_id')}",
            f"base v{fix.get('base_version')} of {fix.get('model')}",
        ]
        if train:
            chain.append(f"trained: {train}")
        parts.append(
            "<h2>lineage of the fix</h2><ol>"
            + "".join(f"<li>{_esc(c)}</li>" for c in chain)
            + "</ol>"
        )
    tree = healed.get("lineage")
    if isinstance(tree, dict):
        data = [n for n in _walk(tree) if n.get("role") == "dataset"]
        parts.append(
            "<h2>lineage back to the training data</h2><p>The registry's lineage of the fix, "
            "walked from its card through every version it derives from; trained on: "
            + (", ".join(f"<b class='dataset'>{_esc(n.get('name'))}</b> (sha256 "
                         f"<code>{_esc(n.get('sha256'))}</code>)" for n in data)
               or "no data set recorded")
            + "</p><ul class='lineage'>" + "".join(_lineage_items(tree)) + "</ul>"
        )
    delta = healed.get("delta")
    if isinstance(delta, dict):
        parts.append(
            "<h2>the fix's delta: where its bytes go</h2><table>"
            + "".join(f"<tr><th>{_esc(k.replace('_', ' '))}</th><td>{_esc(v)}</td></tr>"
                      for k, v in delta.items())
            + "</table>"
        )
    parts.append("<h2>stages</h2><table><tr><th>stage</th><th>seconds</th><th>summary</th></tr>")
    for name, s in steps.items():
        parts.append(
            f"<tr><td>{_esc(name)}</td><td>{_esc(s.get('seconds'))}</td>"
            f"<td>{_esc(s.get('summary'))}</td></tr>"
        )
    parts.append("</table></body></html>\n")
    return "".join(parts)


def write_loop_report(demo_json: str | Path, dest: str | Path | None = None) -> Path:
    """Render ``demo_json`` into ``dest`` (``report.html`` beside it by default); atomic."""
    src = Path(demo_json)
    try:
        demo = json.loads(src.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"loop report: cannot read {src}: {exc}") from exc
    if not isinstance(demo, dict):
        raise InputError(f"loop report: {src}: expected a JSON object")
    out = Path(dest) if dest is not None else src.with_name("report.html")
    atomic_write_text(out, render_loop_report(demo))
    return out
