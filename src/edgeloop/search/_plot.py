"""The search's picture: every trial's accuracy against its latency, the front joined up."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeloop._io import atomic_path

if TYPE_CHECKING:
    from edgeloop.search._search import SearchResult

__all__ = ["plot_front"]


def plot_front(result: SearchResult, dest: str | Path) -> Path:
    """Write a PNG: trials by state, the Pareto front, the chosen model and the latency limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    styles = {
        "full": ("o", "#4c72b0", "trained in full"),
        "stopped": ("x", "#999999", "stopped after short training"),
    }
    for state, (marker, colour, label) in styles.items():
        pts = [t for t in result.trials if t.state == state and t.accuracy is not None]
        if pts:
            ax.scatter(
                [t.latency_ms for t in pts],
                [t.accuracy or 0.0 for t in pts],
                marker=marker,
                c=colour,
                label=label,
                alpha=0.8,
            )
    screened = [t for t in result.trials if t.state == "screened"]
    if screened:
        ax.scatter([], [], marker="|", c="#cc4444", label=f"screened by cost ({len(screened)})")
    if result.front:
        ax.plot(
            [t.latency_ms for t in result.front],
            [t.accuracy or 0.0 for t in result.front],
            "-o",
            c="#dd8452",
            label="Pareto front",
        )
    if result.chosen is not None:
        ax.scatter(
            [result.chosen.latency_ms],
            [result.chosen.accuracy or 0.0],
            marker="*",
            s=220,
            c="#c44e52",
            label="chosen",
            zorder=5,
        )
    if result.limits.max_latency_ms is not None:
        ax.axvline(result.limits.max_latency_ms, ls="--", c="#cc4444", lw=1)
    ax.set_xlabel(f"latency on {result.target} (ms, batch 1)")
    ax.set_ylabel(f"validation accuracy ({result.dataset})")
    ax.set_title(f"search {result.space['name']}: {len(result.trials)} trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(dest)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
