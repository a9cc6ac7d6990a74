"""Inline SVG line charts for the dashboard. Pure: series in, markup out (no JS, no CDN).

Every data point is a ``<circle class="pt">`` with ``data-x``/``data-y`` and a ``<title>``
(hover text), so a browser test can count what was plotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Series", "line_chart"]

W, H = 640, 220
PAD_L, PAD_R, PAD_T, PAD_B = 56, 12, 14, 28


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y); x in seconds (e.g. since the start)
    css: str  # treatment, control, bound
    dashed: bool = False


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_chart(title: str, series: Sequence[Series], x_label: str = "seconds") -> str:
    pts = [p for s in series for p in s.points]
    label = escape(title)
    if not pts:
        return (
            f'<svg class="chart empty" role="img" aria-label="{label}" viewBox="0 0 {W} 40" '
            f'width="{W}" height="40"><text x="8" y="24">{label}: no data yet</text></svg>'
        )
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    if x1 == x0:
        x1 = x0 + 1.0
    if y1 == y0:
        y1 = y0 + 1.0
    y1 += (y1 - y0) * 0.08

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * (W - PAD_L - PAD_R)

    def sy(y: float) -> float:
        return H - PAD_B - (y - y0) / (y1 - y0) * (H - PAD_T - PAD_B)

    out = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {W} {H}" '
        f'width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{label}</title>",
        f'<line class="axis" x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}"/>',
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = y0 + frac * (y1 - y0)
        out.append(
            f'<text class="tick" x="{PAD_L - 4}" y="{sy(y) + 4:.1f}" text-anchor="end">'
            f"{_fmt(y)}</text>"
        )
    out.append(
        f'<text class="tick" x="{PAD_L}" y="{H - 8}">{_fmt(x0)}</text>'
        f'<text class="tick" x="{W - PAD_R}" y="{H - 8}" text-anchor="end">'
        f"{_fmt(x1)} {escape(x_label)}</text>"
    )
    for i, s in enumerate(series):
        if not s.points:
            continue
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        css = escape(s.css)
        out.append(f'<polyline class="line {css}" fill="none" points="{coords}"{dash}/>')
        if not s.dashed:
            for x, y in s.points:
                out.append(
                    f'<circle class="pt {css}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" '
                    f'data-x="{x:.3f}" data-y="{y:.6g}"><title>{escape(s.name)}: {_fmt(y)} '
                    f"at {_fmt(x)} s</title></circle>"
                )
        out.append(
            f'<text class="legend {css}" x="{PAD_L + 8 + 150 * i}" y="{PAD_T + 4}">'
            f"{escape(s.name)}</text>"
        )
    out.append("</svg>")
    return "".join(out)
