"""Output: the results table (Markdown, so it pastes into docs), the JSON file, the plot.

    python -m benchmarks.report results.json [--queues ours,arq,saq,taskiq] [--plot out.png]

redraws the table (and the plot) of a saved run; a queue that was not run shows "—".
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.settings import NOT_PEERS


@dataclass(frozen=True)
class Metric:
    """One row of the table."""

    workload: str
    key: str
    label: str
    unit: str
    higher_is_better: bool
    decimals: int = 0
    #: what a missing figure (None) means in this row
    none_text: str = "n/a"
    #: whether "ours / best peer" means anything here (not for counts such as lost tasks)
    compare: bool = True


def _metrics(workload: str, *rows: tuple) -> list[Metric]:
    return [Metric(workload, *row) for row in rows]


METRICS = (
    *_metrics(
        "enqueue",
        ("enqueue_one", "1. enqueue, one at a time", "tasks/s", True),
        ("enqueue_batch", "1. enqueue, batched (100 per call)", "tasks/s", True),
    ),
    *_metrics(
        "noop",
        ("noop_total", "2. no-op, 1 worker, spawn → all done", "tasks/s", True),
        ("noop_steady", "2. no-op, 1 worker, 1st start → all done", "tasks/s", True),
        ("startup_s", "2. worker start-up, spawn → 1st start", "s", False, 2),
    ),
    *_metrics(
        "redis1",
        ("redis1_total", "2b. one INCR per task, 1 worker, spawn → all done", "tasks/s", True),
        ("redis1_steady", "2b. one INCR per task, 1 worker, 1st start → all done", "tasks/s", True),
    ),
    *_metrics(
        "io",
        ("io_total", "3. sleep 0.1 s, spawn → all done", "tasks/s", True),
        ("io_steady", "3. sleep 0.1 s, 1st start → all done", "tasks/s", True),
        ("io_efficiency", "3. I/O efficiency (1st start, of ideal 1,000/s)", "%", True, 1),
    ),
    *_metrics(
        "io1000",
        ("io1000_total", "3b. sleep 1 s, 1,000 in flight, spawn → all done", "tasks/s", True),
        ("io1000_steady", "3b. sleep 1 s, 1,000 in flight, 1st start → all done", "tasks/s", True),
        ("io1000_efficiency", "3b. I/O efficiency (1st start, of ideal 1,000/s)", "%", True, 1),
        ("io1000_efficiency_total", "3b. I/O efficiency (spawn, of ideal 1,000/s)", "%", True, 1),
        ("io1000_peak", "3b. most tasks in flight at once", "tasks", True, 0, "", False),
    ),
    *_metrics(
        "latency",
        ("latency_p50", "4. pickup latency p50", "ms", False, 1),
        ("latency_p95", "4. pickup latency p95", "ms", False, 1),
        ("latency_p99", "4. pickup latency p99", "ms", False, 1),
        ("latency_samples", "4. pickup latency: tasks sampled", "tasks", True, 0, "", False),
    ),
    *_metrics(
        "memory",
        ("redis_bytes_usage", "5. Redis bytes per queued task (MEMORY USAGE)", "B", False),
        ("redis_bytes_used_memory", "5. Redis bytes per queued task (used_memory Δ)", "B", False),
        ("rss_base_mib", "5. worker RSS, idle, 1 slot", "MiB", False, 1),
        ("rss_idle_mib", "5. worker RSS, idle, 1,000 slots", "MiB", False, 1),
        ("rss_busy_mib", "5. worker RSS, 1,000 tasks sleeping", "MiB", False, 1),
        ("rss_per_task_kib", "5. RSS per in-flight task (vs 1,000 slots idle)", "KiB", False, 2),
        ("rss_per_slot_kib", "5. RSS per in-flight task (vs 1 slot idle)", "KiB", False, 2),
    ),
    *_metrics(
        "scaleout",
        ("scale1_total", "6. no-op, 1 worker, spawn → all done", "tasks/s", True),
        ("scale1_steady", "6. no-op, 1 worker, 1st start → all done", "tasks/s", True),
        ("scale2_total", "6. no-op, 2 workers, spawn → all done", "tasks/s", True),
        ("scale2_steady", "6. no-op, 2 workers, 1st start → all done", "tasks/s", True),
        ("scale_speedup", "6. speed-up, 2 workers / 1 (1st start)", "×", True, 2),
    ),
    *_metrics(
        "crash",
        ("crash_recovery_s", "7. crash: kill → all 100 re-run", "s", False, 1, "lost"),
        ("crash_first_rerun_s", "7. crash: kill → first re-run done", "s", False, 1, "none"),
        ("crash_lost", "7. crash: tasks lost (not done by the cap)", "tasks", False, 0, "", False),
        ("crash_duplicated", "7. crash: tasks done twice or more", "tasks", False, 0, "", False),
    ),
    # the next two come from benchmarks.goodput and benchmarks.follow_fanout, merged by
    # benchmarks.suite
    *_metrics(
        "goodput",
        ("goodput_share", "8. goodput at 1.5x a provider's rate, of its rate", "%", True, 1),
        ("goodput_refused", "8. goodput: calls refused with 429", "%", False, 1, "", False),
        ("goodput_p50_s", "8. goodput: latency p50", "s", False, 1),
        ("goodput_p95_s", "8. goodput: latency p95", "s", False, 1),
        ("goodput_failed", "8. goodput: requests failed", "tasks", False, 0, "", False),
        ("goodput_unfinished", "8. goodput: requests unfinished at the end", "tasks", False, 0,
         "", False),
    ),
    *_metrics(
        "follow",
        ("first_token_p50_ms", "9. first token → follower (other process) p50", "ms", False, 1),
        ("first_token_p99_ms", "9. first token → follower (other process) p99", "ms", False, 1),
        ("chunk_p50_ms", "9. every chunk → follower p50 (50 ms coalescing)", "ms", False, 1),
        ("chunk_p99_ms", "9. every chunk → follower p99 (50 ms coalescing)", "ms", False, 1),
        ("writes_per_answer", "9. writes per 200-chunk answer", "calls", False, 1),
    ),
)


@dataclass
class Results:
    """Figures per queue, failures per queue and workload, and free-form notes."""

    queues: list[str]
    figures: dict[str, dict[str, float | None]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    ran: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def cell(self, queue: str, metric: Metric) -> str:
        """The formatted value, or n/a (the API has no such call), err, skip or blank."""
        if queue in self.skipped:
            return "skip"
        if queue not in self.figures and queue not in self.errors:
            return "—"  # not run
        figures = self.figures.get(queue, {})
        if metric.key in figures:
            value = figures[metric.key]
            return metric.none_text if value is None else f"{value:,.{metric.decimals}f}"
        failed = self.errors.get(queue, {})
        return "err" if metric.workload in failed or metric.key in failed else ""

    def ratio(self, metric: Metric, ours: str = "ours") -> str:
        """ours / best peer (best = highest, or lowest where lower is better)."""
        if not metric.compare:
            return ""
        mine = self.figures.get(ours, {}).get(metric.key)
        peers = [
            self.figures[q][metric.key]
            for q in self.queues
            if q not in NOT_PEERS and self.figures.get(q, {}).get(metric.key) is not None
        ]
        if mine is None or not peers:
            return ""
        best = max(peers) if metric.higher_is_better else min(peers)
        if not best:
            return ""
        ratio = mine / best
        return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"

    def rows(self) -> list[list[str]]:
        """Metrics that some queue has a figure or a failure for, as table rows."""
        rows = []
        for metric in METRICS:
            cells = [self.cell(q, metric) for q in self.queues]
            if any(c not in ("", "—", "skip") for c in cells):
                arrow = "↑" if metric.higher_is_better else "↓"
                rows.append([f"{metric.label} ({metric.unit}) {arrow}", *cells, self.ratio(metric)])
        return rows


def table(results: Results) -> str:
    """A Markdown table with aligned columns."""
    header = ["figure (↑ higher is better, ↓ lower)", *results.queues, "ours / best peer"]
    rows = [header, *results.rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [_line(row, widths) for row in rows]
    rule = (
        "|"
        + "|".join(("-" * (w + 1)) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([lines[0], rule, *lines[1:]])


def _line(row: list[str], widths: list[int]) -> str:
    rest = zip(row[1:], widths[1:], strict=True)
    cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in rest]
    return "| " + " | ".join(cells) + " |"


def machine_info(redis_info: dict) -> dict[str, str]:
    """nproc, CPU model, Redis server version, Python version, OS."""
    model = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        model = found.group(1).strip() if found else ""
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu_model": model or platform.processor(),
        "redis_server": str(redis_info.get("redis_version", "?")),
        "redis_allocator": str(redis_info.get("mem_allocator", "?")),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def write_json(path: Path, results: Results, meta: dict) -> None:
    """Everything: metadata, figures, failures and notes."""
    payload = {
        **meta,
        "queues": results.queues,
        "figures": results.figures,
        "errors": results.errors,
        "skipped": results.skipped,
        "notes": results.notes,
        "metrics": {m.key: {"label": m.label, "unit": m.unit} for m in METRICS},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def write_plot(path: Path, results: Results, title: str) -> None:
    """One small bar chart per figure, a bar per queue (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in METRICS if any(_value(results, q, m) is not None for q in results.queues)]
    cols = 4
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    colors = {"ours": "#d62728", "ours-prefetch": "#ff9896", "arq": "#1f77b4",
              "saq": "#2ca02c", "taskiq": "#ff7f0e", "taskiq-list": "#ffbb78",
              "dramatiq": "#9467bd", "ours-plain": "#f7b6d2", "cookbook": "#7f7f7f"}
    for ax, metric in zip(axes.flat, shown, strict=False):
        _bars(ax, results, metric, colors)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _value(results: Results, queue: str, metric: Metric) -> float | None:
    return results.figures.get(queue, {}).get(metric.key)


def _bars(ax, results: Results, metric: Metric, colors: dict[str, str]) -> None:
    values = [_value(results, q, metric) for q in results.queues]
    heights = [v or 0.0 for v in values]
    ax.bar(results.queues, heights, color=[colors.get(q, "grey") for q in results.queues])
    for i, (queue, v) in enumerate(zip(results.queues, values, strict=True)):
        if metric.key not in results.figures.get(queue, {}):
            continue  # not run for this queue
        text = metric.none_text if v is None else f"{v:,.{metric.decimals}f}"
        ax.annotate(text, (i, heights[i]), ha="center", va="bottom", fontsize=7)
    arrow = "↑" if metric.higher_is_better else "↓"
    ax.set_title(f"{metric.label} {arrow}", fontsize=8)
    ax.set_ylabel(metric.unit, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="x", labelrotation=60)  # nine columns side by side
    positive = [v for v in values if v]
    if positive and min(positive) > 0 and max(positive) / min(positive) > 50:
        ax.set_yscale("log")  # e.g. arq's 500 ms poll next to 1 ms pickups
        ax.set_ylim(min(positive) / 2, max(positive) * 4)
        ax.set_ylabel(f"{metric.unit} (log)", fontsize=8)
    elif positive:
        ax.margins(y=0.18)
    else:
        ax.set_ylim(0, 1)  # all zero (e.g. no duplicated tasks): a flat baseline


def load_json(path: Path, queues: list[str] | None = None) -> tuple[Results, dict]:
    """A saved run as Results (optionally with other columns) and its metadata."""
    data = json.loads(path.read_text())
    results = Results(
        queues=queues or data["queues"],
        figures=data["figures"],
        errors=data["errors"],
        skipped=data["skipped"],
        notes=data["notes"],
    )
    return results, data


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("json", type=Path)
    parser.add_argument("--queues", help="columns, comma-separated (default: the run's)")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    queues = args.queues.split(",") if args.queues else None
    results, data = load_json(args.json, queues)
    print(table(results))
    if args.plot:
        write_plot(args.plot, results, plot_title(data))


def plot_title(meta: dict) -> str:
    m = meta["machine"]
    return f"{meta['date'][:10]} · {m['nproc']} cores {m['cpu_model']} · Redis {m['redis_server']}"


if __name__ == "__main__":
    main()
