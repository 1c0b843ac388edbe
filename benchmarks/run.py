"""The one command: every workload for every queue, then one table.

    python -m benchmarks.run                      # full run, default sizes (a few minutes)
    python -m benchmarks.run --tasks 1000         # smoke run (under a minute)
    python -m benchmarks.run --queues arq,saq --workloads noop,latency --json out.json

Each queue runs in driver processes of its own (`benchmarks.driver`), the peers under their
own virtualenvs (`benchmarks.envs`, built on first use), ours under this interpreter. The
queues take turns: one driver per queue, workload and repeat, in the order repeat, workload,
queue, so that a machine whose speed drifts during the run (a shared VM) drifts for every
queue alike; the medians are taken over the repeats. Progress
goes to stderr, the table to stdout. A queue whose adapter cannot be imported or cannot
connect is skipped with a message; a workload that fails for one queue shows "err" and the
run goes on. Every key the run creates contains its run id and is deleted at the end
(nothing else is touched; the database is never flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from benchmarks.driver import SINGLE_RUN, median_figures, noise_note, run_driver_process
from benchmarks.envs import ensure_env
from benchmarks.redis_tools import delete_matching
from benchmarks.report import Results, machine_info, plot_title, table, write_json, write_plot
from benchmarks.settings import (
    ALL_QUEUES,
    CRASH_TASKS,
    CRASH_WAIT_SECONDS,
    DEFAULT_REDIS_URL,
    HOLD_IN_FLIGHT,
    IN_FLIGHT,
    LOOP_ENV,
    LOOPS,
    Sizes,
    new_run_id,
)
from benchmarks.workloads import WORKLOADS


def _csv(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="default %(default)s")
    parser.add_argument(
        "--queues",
        type=_csv(ALL_QUEUES),
        default=list(ALL_QUEUES),
        help="comma-separated, default %(default)s",
    )
    parser.add_argument(
        "--workloads",
        type=_csv(tuple(WORKLOADS)),
        default=list(WORKLOADS),
        help="comma-separated, default %(default)s",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=10_000,
        help="base task count (default 10,000); I/O tasks and latency samples scale with it",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each workload this many times and report the medians "
        "(default 1; the crash workload always runs once)",
    )
    parser.add_argument(
        "--crash-wait",
        type=float,
        default=CRASH_WAIT_SECONDS,
        metavar="SECONDS",
        help="crash workload: how long after the kill a task may take to complete before "
        "it counts as lost (default %(default)s)",
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=os.environ.get(LOOP_ENV, LOOPS[0]),
        help="the event loop of every asyncio process of the run, every queue's (default "
        f"%(default)s; env {LOOP_ENV})",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--plot", type=Path, help="also draw a PNG bar chart here")
    parser.add_argument(
        "--same-python",
        action="store_true",
        help="run the peers under this interpreter too, not their own venvs",
    )
    parser.add_argument(
        "--cleanup",
        metavar="RUN_ID",
        help="only delete the keys of an interrupted run (bench-…) and exit",
    )
    args = parser.parse_args(argv)
    if args.tasks < 100:
        parser.error("--tasks must be at least 100")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.crash_wait <= 0:
        parser.error("--crash-wait must be positive")
    os.environ[LOOP_ENV] = args.loop  # the drivers and workers it spawns inherit it
    return args


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_driver(args: argparse.Namespace, queue: str, run_id: str, workload: str) -> dict:
    """One driver process for one workload of `queue`, run once; its report, or a
    "skipped" report if it broke."""
    try:
        python = sys.executable if args.same_python else str(ensure_env(queue, say))
    except (OSError, subprocess.CalledProcessError) as exc:
        return {"queue": queue, "skipped": f"could not build its environment: {exc}"}
    report, code = run_driver_process(
        python, queue, args.redis_url, run_id, args.tasks, workload,
        "--repeat", "1", "--crash-wait", str(args.crash_wait))
    if report is None:
        return {"queue": queue, "skipped": f"the driver exited with {code} and no report"}
    return report


def merge(runs: list[tuple[str, dict]]) -> dict:
    """One queue's driver reports, (workload, report) per driver, as one report: samples
    joined per workload, figures the medians over them; skipped if its first driver was."""
    first = runs[0][1]
    if "skipped" in first:
        return first
    merged: dict = {k: first.get(k) for k in ("queue", "python", "versions", "settings")}
    merged |= {"figures": {}, "errors": {}, "samples": {}, "foreign_cpu_percent": {}}
    notes: list[str] = []
    warnings: list[str] = []
    for workload, report in runs:
        for name, samples in report.get("samples", {}).items():
            merged["samples"].setdefault(name, []).extend(samples)
        for name, shares in report.get("foreign_cpu_percent", {}).items():
            merged["foreign_cpu_percent"].setdefault(name, []).extend(shares)
        for key, why in report.get("errors", {}).items():
            merged["errors"].setdefault(key, why)
        if "skipped" in report:  # a later driver broke: its workload shows "err"
            merged["errors"].setdefault(workload, report["skipped"])
        notes += [n for n in report.get("notes", []) if n not in notes]
        warnings += [w for w in report.get("dependency_warnings", []) if w not in warnings]
    for samples in merged["samples"].values():
        merged["figures"].update(median_figures(samples))
    noisy = noise_note(merged["queue"], merged["foreign_cpu_percent"])
    merged["notes"] = notes + ([noisy] if noisy else [])
    merged["dependency_warnings"] = warnings
    return merged


def collect(results: Results, report: dict) -> None:
    """Merge one driver's report into the results."""
    queue = report["queue"]
    if "skipped" in report:
        results.skipped[queue] = report["skipped"]
        say(f"[{queue}] SKIPPED: the adapter does not work: {report['skipped'].splitlines()[0]}")
        return
    results.figures[queue] = report.get("figures", {})
    if report.get("errors"):
        results.errors[queue] = report["errors"]
    results.notes += report.get("notes", [])
    results.notes += [f"{queue}: {w}" for w in report.get("dependency_warnings", [])]


async def server_info(url: str) -> dict:
    client = aioredis.from_url(url)
    try:
        return await client.info("server") | await client.info("memory")
    finally:
        await client.aclose()


async def sweep(url: str, fragment: str) -> int:
    """Delete every key that contains `fragment` (a run id)."""
    client = aioredis.from_url(url)
    try:
        return await delete_matching(client, fragment)
    finally:
        await client.aclose()


def run_all(args: argparse.Namespace) -> tuple[Results, dict]:
    """All drivers, one after another, queues taking turns; then a final sweep of the run's
    keys."""
    run_id = new_run_id()
    say(
        f"run {run_id}: {args.redis_url}, queues {','.join(args.queues)}, "
        f"workloads {','.join(args.workloads)}, {args.tasks} tasks"
    )
    results, reports = Results(queues=list(args.queues)), {}
    per_queue: dict[str, list[tuple[str, dict]]] = {queue: [] for queue in args.queues}
    try:
        for repeat in range(args.repeat):
            for workload in args.workloads:
                if repeat and workload in SINGLE_RUN:
                    continue
                for queue, done in per_queue.items():
                    if done and "skipped" in done[0][1]:
                        continue  # its adapter does not work: tried once is enough
                    done.append((workload, run_driver(args, queue, run_id, workload)))
        for queue, done in per_queue.items():
            reports[queue] = merge(done)
            collect(results, reports[queue])
    finally:
        leftover = asyncio.run(sweep(args.redis_url, run_id))
        if leftover:
            say(f"deleted {leftover} leftover keys of run {run_id}")
    return results, describe(args, run_id, reports)


def describe(args: argparse.Namespace, run_id: str, reports: dict) -> dict:
    """Metadata for the JSON file and the plot: date, machine, sizes, versions, settings."""
    info = asyncio.run(server_info(args.redis_url))
    return {
        "run_id": run_id,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "redis_url": args.redis_url,
        "loop": args.loop,
        "machine": machine_info(info),
        "sizes": {
            **vars(Sizes.scaled(args.tasks, crash_wait_s=args.crash_wait)),
            "crash_tasks": CRASH_TASKS,
            "in_flight": IN_FLIGHT,
            "hold_in_flight": HOLD_IN_FLIGHT,
            "repeat": args.repeat,
        },
        "python": {q: r.get("python") for q, r in reports.items()},
        "versions": {q: r.get("versions") for q, r in reports.items()},
        "settings": {q: r.get("settings") for q, r in reports.items()},
        "samples": {q: r.get("samples") for q, r in reports.items()},
        "foreign_cpu_percent": {q: r.get("foreign_cpu_percent") for q, r in reports.items()},
    }


def emit(args: argparse.Namespace, results: Results, meta: dict) -> None:
    """The table to stdout; JSON and plot if asked; skips, failures and notes to stderr."""
    print(table(results), flush=True)
    for queue, why in results.skipped.items():
        say(f"skipped {queue}: {why.splitlines()[0]}")
    for queue, failures in results.errors.items():
        for workload, why in failures.items():
            say(f"failed {queue}/{workload}: {why.splitlines()[0]}")
    for note in results.notes:
        say(f"note: {note}")
    if args.json:
        write_json(args.json, results, meta)
        say(f"wrote {args.json}")
    if args.plot:
        write_plot(args.plot, results, plot_title(meta))
        say(f"wrote {args.plot}")


def cleanup_only(args: argparse.Namespace) -> int:
    if not args.cleanup.startswith("bench-") or len(args.cleanup) < 20:
        say(f"refusing to delete by {args.cleanup!r}: not a run id (bench-<time>-<pid>-<hex>)")
        return 2
    say(f"deleted {asyncio.run(sweep(args.redis_url, args.cleanup))} keys of {args.cleanup}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cleanup:
        return cleanup_only(args)
    try:
        results, meta = run_all(args)
    except KeyboardInterrupt:
        say("interrupted (the keys of this run were deleted on the way out)")
        return 130
    emit(args, results, meta)
    return 0 if any(results.figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
