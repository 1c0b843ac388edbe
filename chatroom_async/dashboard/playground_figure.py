"""The playground's figure: throughput and latency against the arrival rate (M/M/c curves
beside the measured runs), and the latest run's queue over virtual time."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chatroom_async.queueing import mmc

from .figure import COLORS, DPI
from .whatif import Outcome

PREDICTED = "#000000"


def draw_playground(current: Outcome, history: list[Outcome]) -> Figure:
    """Three panels: throughput vs rate, latency vs rate, the current run's queue."""
    fig = Figure(figsize=(11.0, 3.9), dpi=DPI, layout="constrained")
    p, pred = current.point, current.prediction
    fig.suptitle(
        f"what if: {p.rate:g} tasks/s into {p.concurrency} workers "
        f"(provider cap {p.provider_limit or 'off'}, RPM {p.rpm or 'off'}, failures "
        f"{p.failure_rate:.0%}, {p.max_retries} retries from {p.retry_base_s:g} s)\n"
        f"measured {current.throughput:.2f}/s, mean latency {_s(current.mean_latency_s)}"
        f" · M/M/c: utilisation {pred.utilization:.0%}, {pred.throughput:.2f}/s, mean "
        f"latency {_s(pred.mean_latency_s)}", fontsize=10)
    same = [o for o in history if o.point.same_pool(p)] or [current]
    top_rate = max(2.0 * p.servers() / current.service_s if current.service_s > 0 else 1.0,
                   *(o.point.rate * 1.2 for o in same))
    rates = np.linspace(top_rate / 200, top_rate, 200)
    curve = [mmc(float(r), current.service_s, p.servers()) for r in rates]
    ax = fig.subplots(1, 3)
    _throughput(ax[0], current, same, rates, [c.throughput for c in curve])
    _latency(ax[1], current, same, rates, [c.mean_latency_s for c in curve])
    _queue(ax[2], current)
    return fig


def render_playground(current: Outcome, history: list[Outcome]) -> bytes:
    fig = draw_playground(current, history)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if math.isfinite(value) else "unbounded (the queue grows)"


def _throughput(ax: Axes, cur: Outcome, same: list[Outcome], rates: np.ndarray,
                predicted: list[float]) -> None:
    ax.plot(rates, predicted, color=PREDICTED, ls="--", label="M/M/c prediction")
    ax.scatter([o.point.rate for o in same], [o.throughput for o in same],
               color=COLORS["completed"], alpha=0.5, label="measured (earlier runs)")
    ax.scatter([cur.point.rate], [cur.throughput], color=COLORS["completed"], s=90,
               edgecolors="black", zorder=3, label="measured (this run)")
    if cur.point.rpm:
        ax.axhline(cur.point.rpm / 60, color=COLORS["limit"], ls=":", label="provider RPM cap")
    ax.set(title="Throughput", xlabel="arrival rate (tasks/s)", ylabel="completed tasks / s")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def _latency(ax: Axes, cur: Outcome, same: list[Outcome], rates: np.ndarray,
             predicted: list[float]) -> None:
    finite = [v for v in predicted if math.isfinite(v)]
    measured = [o.p95_latency_s for o in same if o.p95_latency_s is not None]
    top = max([*(finite[:1] * 4), *measured, 1.0]) * 1.15
    ax.plot(rates, [v if math.isfinite(v) else math.nan for v in predicted], color=PREDICTED,
            ls="--", label="M/M/c mean")
    knee = cur.point.servers() / cur.service_s if cur.service_s > 0 else None
    if knee is not None and math.isfinite(knee):
        ax.axvline(knee, color=COLORS["limit"], ls=":", label=f"capacity {knee:.2f}/s")
    mean = [(o.point.rate, o.mean_latency_s) for o in same if o.mean_latency_s is not None]
    p95 = [(o.point.rate, o.p95_latency_s) for o in same if o.p95_latency_s is not None]
    if mean:
        ax.scatter(*zip(*mean, strict=True), color=COLORS["in flight"], alpha=0.5,
                   label="measured mean")
    if p95:
        ax.scatter(*zip(*p95, strict=True), marker="^", color=COLORS["processing"], alpha=0.6,
                   label="measured p95")
    if cur.mean_latency_s is not None:
        ax.scatter([cur.point.rate], [cur.mean_latency_s], color=COLORS["in flight"], s=90,
                   edgecolors="black", zorder=3, label="this run (mean)")
    ax.set(title="Latency: the knee", xlabel="arrival rate (tasks/s)",
           ylabel="submit to finish (s)", ylim=(0, top))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def _queue(ax: Axes, cur: Outcome) -> None:
    s = cur.report.series
    ax.fill_between(s["t"], s["queue_depth"], color=COLORS["in flight"], alpha=0.6,
                    label="waiting")
    ax.plot(s["t"], s["in_flight"], color=COLORS["processing"], lw=1.5, label="in flight")
    ax.axhline(cur.point.concurrency, color=COLORS["limit"], ls="--", label="concurrency")
    ax.set(title="This run over virtual time", xlabel="simulated time (s)", ylabel="tasks")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
