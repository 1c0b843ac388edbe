"""A/B runs of one workload for a peer under different settings, variants taking turns.

    python -m benchmarks.peer_ab taskiq taskiq:max_prefetch=100 --rounds 3
    python -m benchmarks.peer_ab taskiq taskiq:results=0 taskiq-list --workload noop

A variant is a column name (`benchmarks.settings.ALL_QUEUES`) with optional worker
settings after a colon, `KEY=VALUE` joined by commas; each worker module lists the keys it
takes (`OPTIONS`). Every round runs every variant once, in order, each in a driver process
of its own under its queue's environment, so a machine whose speed drifts drifts for all
of them; the figures of every round and the medians go to stdout. Keys are deleted as in
`benchmarks.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/peer_ab.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.driver import run_driver_process
from benchmarks.envs import ensure_env
from benchmarks.run import say, sweep
from benchmarks.settings import ALL_QUEUES, DEFAULT_REDIS_URL, new_run_id
from benchmarks.workloads import WORKLOADS

#: the figures printed per workload (the rest are in the driver's report)
SHOWN = {
    "io": ("io_efficiency", "io_steady", "io_total"),
    "noop": ("noop_steady", "noop_total", "startup_s"),
    "latency": ("latency_p50", "latency_p99"),
}


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`"taskiq:a=1,b=2"` as `("taskiq", ["a=1", "b=2"])`."""
    queue, _, rest = text.partition(":")
    if queue not in ALL_QUEUES:
        raise argparse.ArgumentTypeError(f"unknown column {queue!r}; choose from {ALL_QUEUES}")
    return queue, [item for item in rest.split(",") if item]


def run_variant(args: argparse.Namespace, run_id: str, variant: str) -> dict:
    """One driver for one variant and the workload; its figures (or its error)."""
    queue, options = parse_variant(variant)
    worker_options = [arg for option in options for arg in ("--worker-option", option)]
    report, code = run_driver_process(str(ensure_env(queue, say)), queue, args.redis_url,
                                      run_id, args.tasks, args.workload, *worker_options)
    if report is None:
        return {"skipped": f"the driver exited with {code}"}
    figures = report.get("figures") or {}
    foreign = report.get("foreign_cpu_percent", {}).get(args.workload, [0.0])
    return {**figures, "foreign_cpu": max(foreign, default=0.0)} if figures else report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_ab", description=__doc__)
    parser.add_argument("variants", nargs="+", help="column[:KEY=VALUE,...]")
    parser.add_argument("--workload", choices=tuple(SHOWN), default="io")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000, help="as benchmarks.run --tasks")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    for variant in args.variants:
        parse_variant(variant)
    assert args.workload in WORKLOADS
    run_id = new_run_id()
    say(f"run {run_id}: {args.workload}, {args.rounds} rounds of {', '.join(args.variants)}")
    rows: dict[str, list[dict]] = {variant: [] for variant in args.variants}
    try:
        for round_no in range(1, args.rounds + 1):
            for variant in args.variants:
                figures = run_variant(args, run_id, variant)
                rows[variant].append(figures)
                print(f"round {round_no} {variant}: {_format(figures, args.workload)}", flush=True)
    finally:
        asyncio.run(sweep(args.redis_url, run_id))
    print("medians:")
    for variant, runs in rows.items():
        medians = {
            key: statistics.median(values)
            for key in (*SHOWN[args.workload], "foreign_cpu")
            if (values := [run[key] for run in runs if run.get(key) is not None])
        }
        print(f"  {variant}: {_format(medians, args.workload)}", flush=True)
    return 0


def _format(figures: dict, workload: str) -> str:
    if "skipped" in figures or "errors" in figures:
        why = str(figures.get("skipped") or figures.get("errors"))
        return f"FAILED {why.splitlines()[0][:300]}"
    shown = [f"{key} {figures[key]:,.2f}" for key in SHOWN[workload] if key in figures]
    return ", ".join([*shown, f"others' CPU {figures.get('foreign_cpu', 0.0):.0f}%"])


if __name__ == "__main__":
    sys.exit(main())
