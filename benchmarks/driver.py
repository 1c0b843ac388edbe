"""Runs the chosen workloads for ONE queue, in that queue's own environment.

`benchmarks.run` starts one driver process per queue (the peers' under their
`benchmarks/.venvs/<queue>` interpreters, see `benchmarks.envs`), reads the last stdout line
that starts with `BENCH-RESULT ` (JSON) and prints the combined table. Progress goes to
stderr. A queue whose adapter cannot be imported or cannot connect is reported as skipped;
a workload that fails is reported as failed, and the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

import redis.asyncio as aioredis

from benchmarks.adapters import ADAPTERS, QueueAdapter, load_adapter
from benchmarks.cpu import CpuWatch
from benchmarks.redis_tools import delete_matching
from benchmarks.settings import CRASH_WAIT_SECONDS, REPO_ROOT, Sizes, use_run_loop
from benchmarks.workloads import WORKLOADS, RunContext

RESULT_PREFIX = "BENCH-RESULT "


def run_driver_process(python: str, queue: str, redis_url: str, run_id: str, tasks: int,
                       workloads: str, *extra: str) -> tuple[dict | None, int]:
    """Run `python -m benchmarks.driver` for `queue` under the interpreter `python` (its
    progress goes to stderr) and return its report, the last stdout line that starts with
    RESULT_PREFIX (None if there is none), with its exit code. `extra`: more options."""
    argv = [python, "-m", "benchmarks.driver", "--queue", queue, "--redis-url", redis_url,
            "--run-id", run_id, "--tasks", str(tasks), "--workloads", workloads, *extra]
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(argv, check=False, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": path},
                          stdout=subprocess.PIPE, text=True)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :]), done.returncode
    return None, done.returncode


CHECKED_EXTRAS = ("", "redis", "hiredis")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", required=True, choices=tuple(ADAPTERS))
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--workloads", required=True, help="comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs per workload (median)")
    parser.add_argument(
        "--worker-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every worker process as --option (benchmarks.peer_ab)",
    )
    parser.add_argument("--crash-wait", type=float, default=CRASH_WAIT_SECONDS)
    return parser.parse_args(argv)


def dependency_warnings(packages: tuple[str, ...]) -> list[str]:
    """Installed versions that the queue's library does not declare support for."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["(packaging is not installed: dependency ranges not checked)"]
    found = []
    for package in packages:
        for line in _requires(package):
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in CHECKED_EXTRAS):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                found.append(f"{package} requires {req.name}{req.specifier}, found {have}")
    return sorted(set(found))


def _requires(package: str) -> list[str]:
    try:
        return metadata.requires(package) or []
    except metadata.PackageNotFoundError:
        return []


async def preflight(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> None:
    """Open and close a client, so a broken adapter fails once, with a clear message."""
    adapter = adapter_cls(ctx.redis_url, f"{ctx.run_id}-{adapter_cls.label}-check")
    try:
        await adapter.open()
        await adapter.close()
    finally:
        await adapter.cleanup(ctx.client)


NOISY_PERCENT = 5.0
# crash: up to --crash-wait (330 s) per queue. Latency repeats like the rest: one run's p99
# is its ten slowest pickups of 1,000 and moves more between runs than the queues differ.
SINGLE_RUN = {"crash"}
UNTIMED = {"memory"}  # bytes, not rates: others' CPU does not bias it (and killing a worker
# with 1,000 open connections costs kernel time that /proc charges to no process)


async def run_workloads(
    ctx: RunContext, adapter_cls: type[QueueAdapter], names: list[str], repeat: int
) -> dict:
    """Each workload `repeat` times (median per figure); failures are recorded, not raised."""
    report: dict = {"figures": {}, "errors": {}, "samples": {}, "foreign_cpu_percent": {}}
    redis_pid = await local_redis_pid(ctx.client)
    for name in names:
        if adapter_cls.workloads is not None and name not in adapter_cls.workloads:
            continue
        say(f"[{adapter_cls.label}] {name} ...")
        began = time.monotonic()
        times = 1 if name in SINGLE_RUN else repeat
        runs, foreign = await _repeat(ctx, adapter_cls, name, times, redis_pid, report["errors"])
        if runs:
            report["figures"].update(median_figures(runs))
            report["samples"][name] = runs
            report["foreign_cpu_percent"][name] = foreign
            say(f"[{adapter_cls.label}] {name} done in {time.monotonic() - began:.1f} s")
    return report


async def _repeat(
    ctx: RunContext,
    adapter_cls: type[QueueAdapter],
    name: str,
    times: int,
    redis_pid: int | None,
    errors: dict[str, str],
) -> tuple[list[dict], list[float]]:
    """Run one workload `times` times: its figures and others' CPU share for each run."""
    runs, foreign = [], []
    for _ in range(times):
        watch = CpuWatch.start(redis_pid)
        try:
            runs.append(await WORKLOADS[name](ctx, adapter_cls))
        except Exception as exc:  # noqa: BLE001 - one failed workload must not stop the run
            errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
            say(f"[{adapter_cls.label}] {name} FAILED: {type(exc).__name__}: {_first_line(exc)}")
            break
        if name not in UNTIMED:
            foreign.append(watch.foreign_percent())
    return runs, foreign


def median_figures(runs: list[dict]) -> dict:
    """Per figure, the median over the runs (None where the API had no such call)."""
    keys = dict.fromkeys(k for run in runs for k in run)
    medians = {}
    for key in keys:
        values = [run[key] for run in runs if run.get(key) is not None]
        medians[key] = statistics.median(values) if values else None
    return medians


def noise_note(label: str, foreign: dict[str, list[float]]) -> str | None:
    """A note naming the workloads during which other programs took CPU, if any did."""
    noisy = {name: max(v) for name, v in foreign.items() if max(v, default=0.0) > NOISY_PERCENT}
    if not noisy:
        return None
    listed = ", ".join(f"{name} {worst:.0f}%" for name, worst in noisy.items())
    return (
        f"{label}: other programs used CPU during {listed} (worst run, share of all "
        "CPUs); those figures may be low"
    )


async def local_redis_pid(client: aioredis.Redis) -> int | None:
    """The Redis server's pid if it runs on this machine (for the CPU accounting)."""
    pid = (await client.info("server")).get("process_id")
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()  # noqa: ASYNC240 - procfs, once
    except (OSError, TypeError):
        return None
    return int(pid) if comm.startswith("redis") else None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


async def drive(args: argparse.Namespace) -> dict:
    """Everything for one queue; always returns a JSON-able report."""
    client = aioredis.from_url(args.redis_url)
    sizes = Sizes.scaled(args.tasks, crash_wait_s=args.crash_wait)
    ctx = RunContext(client, args.redis_url, args.run_id, sizes)
    report: dict = {"queue": args.queue, "python": sys.executable}
    try:
        adapter_cls = load_adapter(args.queue)
        if args.worker_option:
            adapter_cls = type(
                adapter_cls.__name__,
                (adapter_cls,),
                {"worker_options": tuple(args.worker_option)},
            )
            report["worker_options"] = args.worker_option
        report |= {
            "versions": adapter_cls.versions(),
            "settings": adapter_cls.settings_note,
            "dependency_warnings": dependency_warnings(adapter_cls.packages),
        }
        await preflight(ctx, adapter_cls)
    except Exception as exc:  # noqa: BLE001 - any failure here means: skip this queue
        report["skipped"] = f"{type(exc).__name__}: {exc}"
        await client.aclose()
        return report
    try:
        report |= await run_workloads(ctx, adapter_cls, args.workloads.split(","), args.repeat)
        report["errors"] |= ctx.failures
    finally:
        await delete_matching(client, f"{args.run_id}-{args.queue}-")
        await client.aclose()
    report["notes"] = ctx.notes
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    use_run_loop()
    report = asyncio.run(drive(args))
    print(RESULT_PREFIX + json.dumps(report, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
