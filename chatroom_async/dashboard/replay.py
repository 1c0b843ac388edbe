"""Replay: the dashboard's six panels for a `SimulationReport`, over its virtual time.

A report keeps time series of throughput, queue depth (all priorities together) and
tasks in flight, and whole-run summaries of the latency, the retries and failures by kind
and the provider's answers; the panels that have no time series in a report draw the
summaries instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from IPython.display import Image

from chatroom_async import SimulationReport

from .figure import render_png, save_png
from .frame import Frame

#: The simulated provider's 429 causes, as `SimStats.errors` names them.
RATE_LIMIT_CODES = {"concurrency_limit": "1302 in flight", "frequency_limit": "1303 RPM/TPM",
                    "rate_limit": "random 429"}


def report_frame(report: SimulationReport, title: str | None = None) -> Frame:
    """The report as a frame: what the live dashboard would have shown, in virtual time."""
    c, s, t = report.config, report.series, report.totals
    step = s["t"][0] if s["t"] else 0.0
    errors: dict[str, Any] = report.backend.get("errors", {})
    limited = {label: int(errors.get(kind, 0)) for kind, label in RATE_LIMIT_CODES.items()}
    rate = c.get("rate")
    return Frame(
        title=title or (f"simulation: {c.get('tasks')} tasks, {c.get('concurrency')} workers, "
                        f"{rate:.3g}/s offered" if rate else "simulation"),
        subtitle=(f"{report.duration_s:.0f} s simulated · completed {t['completed']} · failed "
                  f"{t['failed']} · retries {t['retries']} · 429s {sum(limited.values())}"),
        t=[x - step for x in s["t"]],  # the start of each interval, from 0
        completed_per_s=s["completed_per_s"],
        submitted_per_s=[rate] * len(s["t"]) if rate else [],
        queue={"all priorities": s["queue_depth"]},
        in_flight=s["in_flight"],
        limit=[c["concurrency"]] * len(s["t"]) if "concurrency" in c else [],
        latency={"queue wait": report.queue_wait, "processing": report.service_time},
        retries_by_kind=report.retries_by_type,
        failures_by_kind=report.failures_by_type,
        rate_limited_by_code={k: v for k, v in limited.items() if v} or {"(none)": 0})


def replay(report: SimulationReport, title: str | None = None) -> Image:
    """The report's panels as an image a notebook cell shows."""
    return Image(data=render_png(report_frame(report, title)), format="png")  # type: ignore[no-untyped-call]


def save_report_png(report: SimulationReport, path: str | Path,
                    title: str | None = None) -> Path:
    """Write the report's panels to a PNG file; returns the path."""
    return save_png(report_frame(report, title), path)
