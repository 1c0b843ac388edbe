"""Tables and a timeline plot of one request's events, for 02_sequence.

A trace is a list of `Step`s, recorded by the notebook from the processor's callbacks
(the lesson); this module only prints and draws them, so the notebook's cells stay short.
Labels on the plot are the API's own names (English), which every font can draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

#: Marker colour per step name; names not listed are grey.
COLOURS = {
    "submit_task": "tab:blue",
    "status": "tab:cyan",
    "task_started": "tab:purple",
    "task_retrying": "tab:orange",
    "task_completed": "tab:green",
    "task_failed": "tab:red",
    "wait_for_task": "black",
}


@dataclass(frozen=True)
class Step:
    """One thing seen at time `t` (seconds since the request was submitted)."""

    t: float
    name: str  # an event type, or the API call that returned
    attempt: int  # which attempt of the task (1 = the first)
    detail: str = ""


def table(steps: list[Step]) -> str:
    """One line per step: time, name, attempt, detail."""
    return "\n".join(f"{s.t:7.3f} s  {s.name:<15} attempt {s.attempt}  {s.detail}".rstrip()
                     for s in steps)


def backoff_waits(steps: list[Step]) -> list[float]:
    """The gaps between each `task_retrying` and the `task_started` that follows it."""
    waits, pending = [], None
    for s in steps:
        if s.name == "task_retrying":
            pending = s.t
        elif s.name == "task_started" and pending is not None:
            waits.append(s.t - pending)
            pending = None
    return waits


def plot_timelines(traces: dict[str, list[Step]]) -> Figure:
    """One row per trace: each attempt as a bar, each step as a labelled marker.

    Drawn with pyplot, so Jupyter shows it below the cell that calls this.
    """
    fig, ax = plt.subplots(figsize=(10, 1.2 + 1.3 * len(traces)), layout="constrained")
    for row, steps in enumerate(traces.values()):
        y = len(traces) - 1 - row
        _attempt_bars(ax, steps, y)
        for s in steps:
            if s.name == "wait_for_task":  # the client learns the outcome: a mark above
                ax.plot(s.t, y + 0.3, "v", color="black", zorder=3)
            elif s.name.startswith("task_"):
                ax.plot(s.t, y, "o", color=COLOURS[s.name], zorder=3)
                below = s.name == "task_started"
                ax.annotate(s.name, (s.t, y), xytext=(0, -17 if below else 9),
                            textcoords="offset points", ha="center", fontsize=8)
    ax.plot([], [], "v", color="black", label="wait_for_task returns (client notified)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_yticks(range(len(traces)), list(reversed(traces)))
    ax.set_ylim(-0.7, len(traces) + 0.1)
    ax.set_xlabel("time since submit_task (s, virtual)")
    ax.set_title("one request's events: bars are attempts at the AI API")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _attempt_bars(ax: object, steps: list[Step], y: float) -> None:
    """A bar from each `task_started` to the event that ended that attempt."""
    start = None
    for s in steps:
        if s.name == "task_started":
            start = s.t
        elif s.name in ("task_retrying", "task_completed", "task_failed") and start is not None:
            ok = s.name == "task_completed"
            ax.broken_barh([(start, s.t - start)], (y - 0.15, 0.3),  # type: ignore[attr-defined]
                           color="tab:green" if ok else "tab:red", alpha=0.25)
            start = None
