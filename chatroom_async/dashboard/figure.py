"""`draw`: a `Frame` as one matplotlib figure of six panels; `render_png` as PNG bytes.

Uses matplotlib's object-oriented API with the Agg canvas only (no pyplot, no global
state), so frames can be drawn on a worker thread. Labels are English: the default fonts
render them everywhere, where Chinese glyphs would need a CJK font.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .frame import LATENCY_GROUPS, PERCENTILES, QUEUE_BANDS, Frame

#: One colour per meaning, the same in every panel (tests look for them in the pixels).
COLORS = {"completed": "#2ca02c", "submitted": "#7f7f7f", "in flight": "#1f77b4",
          "limit": "#d62728", "429": "#9467bd", "retries": "#ff7f0e", "failures": "#d62728",
          "queue wait": "#1f77b4", "processing": "#ff7f0e"}
QUEUE_COLORS = {"urgent": "#d62728", "high": "#ff7f0e", "normal": "#1f77b4", "low": "#17becf",
                "retry wait": "#bcbd22", "all priorities": "#1f77b4"}
_PCT_STYLE = {"p50": ":", "p95": "--", "p99": "-"}
SIZE_IN = (11.0, 6.2)
DPI = 90


def draw(frame: Frame) -> Figure:
    """The six panels of `frame` in a new figure."""
    # A fixed layout: "constrained" would cost about as much again as the drawing.
    fig = Figure(figsize=SIZE_IN, dpi=DPI)
    fig.subplots_adjust(left=0.06, right=0.985, top=0.87, bottom=0.08, hspace=0.42,
                        wspace=0.3)
    fig.suptitle(f"{frame.title}\n{frame.subtitle}" if frame.subtitle else frame.title,
                 fontsize=11)
    ax = fig.subplots(2, 3).ravel()
    _throughput(ax[0], frame)
    _queue(ax[1], frame)
    _in_flight(ax[2], frame)
    _latency(ax[3], frame)
    _errors(ax[4], frame)
    _rate_limited(ax[5], frame)
    return fig


def render_png(frame: Frame) -> bytes:
    """`draw(frame)` as PNG bytes (about 0.1-0.2 s: call it off the event loop)."""
    fig = draw(frame)
    FigureCanvasAgg(fig)  # attaches the Agg canvas: no pyplot, no global state
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_png(frame: Frame, path: str | Path) -> Path:
    """Write `draw(frame)` to a PNG file; returns the path."""
    path = Path(path)
    path.write_bytes(render_png(frame))
    return path


def _time_axis(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8, framealpha=0.8)


def _throughput(ax: Axes, f: Frame) -> None:
    if f.submitted_per_s:
        ax.plot(f.t, f.submitted_per_s, color=COLORS["submitted"], ls="--",
                label="submitted (offered)")
    ax.plot(f.t, f.completed_per_s, color=COLORS["completed"], lw=2, label="completed")
    _time_axis(ax, "Throughput", "tasks / s")
    _legend(ax)


def _queue(ax: Axes, f: Frame) -> None:
    bands = [b for b in (*QUEUE_BANDS, "all priorities") if b in f.queue]
    if bands and f.t:
        ax.stackplot(f.t, *[f.queue[b] for b in bands], labels=bands,
                     colors=[QUEUE_COLORS[b] for b in bands], alpha=0.8)
    _time_axis(ax, "Queue depth by priority", "tasks waiting")
    _legend(ax)


def _in_flight(ax: Axes, f: Frame) -> None:
    ax.plot(f.t, f.in_flight, color=COLORS["in flight"], lw=2, label="in flight")
    if f.limit:
        ax.step(f.t, f.limit, where="post", color=COLORS["limit"], ls="--",
                label="concurrency limit")
    _time_axis(ax, "In flight vs concurrency limit", "tasks")
    top = max([*f.in_flight, *f.limit, 1])
    ax.set_ylim(0, top * 1.25)
    _legend(ax)


def _latency(ax: Axes, f: Frame) -> None:
    if f.latency_series:
        for key, values in f.latency_series.items():
            group, pct = key.rsplit(" ", 1)
            ax.plot(f.t, [math.nan if v is None else v for v in values],
                    color=COLORS[group], ls=_PCT_STYLE[pct], label=key)
        _time_axis(ax, "Latency (recent window)", "seconds")
        ax.legend(loc="upper left", fontsize=7, ncol=2, framealpha=0.8)
        return
    width = 0.8 / len(LATENCY_GROUPS)
    for i, group in enumerate(LATENCY_GROUPS):
        s: Mapping[str, float | None] = f.latency.get(group, {})
        bars = ax.bar([k + (i - 0.5) * width for k in range(len(PERCENTILES))],
                      [s.get(p) or 0.0 for p in PERCENTILES], width, color=COLORS[group],
                      label=group)
        ax.bar_label(bars, fmt="%.2g", fontsize=7)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the labels and the legend
    ax.set_xticks(range(len(PERCENTILES)), PERCENTILES)
    ax.set_title("Latency percentiles", fontsize=10)
    ax.set_ylabel("seconds")
    ax.grid(alpha=0.3, axis="y")
    _legend(ax)


def _errors(ax: Axes, f: Frame) -> None:
    kinds = sorted(set(f.retries_by_kind) | set(f.failures_by_kind))
    ax.set_title("Retries and failures by kind", fontsize=10)
    ax.set_xlabel("count")
    if not kinds:
        ax.text(0.5, 0.5, "none yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        return
    y = range(len(kinds))
    ax.barh([k - 0.2 for k in y], [f.retries_by_kind.get(k, 0) for k in kinds], 0.4,
            color=COLORS["retries"], label="retries")
    ax.barh([k + 0.2 for k in y], [f.failures_by_kind.get(k, 0) for k in kinds], 0.4,
            color=COLORS["failures"], label="failures")
    ax.set_yticks(list(y), [_short(k) for k in kinds], fontsize=8)
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="lower right", fontsize=8)


def _rate_limited(ax: Axes, f: Frame) -> None:
    if f.rate_limited_by_code or not f.rate_limited_per_s:
        codes = list(f.rate_limited_by_code) or ["(none)"]
        bars = ax.bar(codes, [f.rate_limited_by_code.get(c, 0) for c in codes], width=0.5,
                      color=COLORS["429"], label="429 answers")
        ax.bar_label(bars, fontsize=8)
        ax.set_ylim(0, max([*f.rate_limited_by_code.values(), 1]) * 1.25)
        ax.set_title("Provider 429s (whole run)", fontsize=10)
        ax.set_ylabel("count")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    else:
        ax.plot(f.t, f.rate_limited_per_s, color=COLORS["429"], lw=2, label="429 answers")
        _time_axis(ax, "Provider 429s", "429s / s")
    _legend(ax)


def _short(kind: str) -> str:
    return kind.removesuffix("Error") or kind

