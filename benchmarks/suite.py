"""Every benchmark in one command: one table with ratios, one JSON file, one plot.

    python -m benchmarks.suite --repeat 3 \\
        --json benchmarks/results/$(date +%F)-suite.json --plot docs/benchmarks.png
    python -m benchmarks.suite --quick              # a smoke run of every step (minutes)

Steps, one after another, each in processes of its own, progress on stderr:
1. `benchmarks.run`: the queue workloads (enqueue, no-op, one Redis command, I/O with 100
   and 1,000 in flight, pickup latency, memory, scale-out) for every queue, taking turns;
2. the crash workload, all queues at once (each waits minutes for its recovery, and the
   waiting costs no CPU; the figures are whole seconds of lease or timeout);
3. `benchmarks.goodput`: chat requests at 1.5x a simulated provider's rate, through ours
   with the shared limiter, ours without it, each peer's own workers and retry, and the
   OpenAI cookbook's throttle (the anchor);
4. `benchmarks.follow_fanout`: first token and later chunks from the backend to a follower
   in another process.
Then the table (a row per figure, a column per queue, "ours / best peer"), the
targets with "met?", and, if asked, the JSON (every step's own output kept inside) and the
plot. `--steps` picks steps; a step that fails is reported and the others still count.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/suite.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import Results, plot_title, table, write_json, write_plot
from benchmarks.settings import (
    ALL_QUEUES,
    CRASH_WAIT_SECONDS,
    DEFAULT_REDIS_URL,
    LOOP_ENV,
    LOOPS,
    NOT_PEERS,
    OUR_VARIANTS,
    REPO_ROOT,
)
from benchmarks.workloads import WORKLOADS
from chatroom_async import ProcessorSettings

FOLLOW_KEYS = ("first_token_p50_ms", "first_token_p99_ms", "chunk_p50_ms", "chunk_p99_ms",
               "writes_per_answer")

STEPS = ("run", "crash", "goodput", "follow")


def say(message: str) -> None:
    print(f"[suite] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="default %(default)s")
    parser.add_argument("--steps", default=",".join(STEPS), help="default %(default)s")
    parser.add_argument("--queues", default=",".join(ALL_QUEUES), help="default %(default)s")
    parser.add_argument("--repeat", type=int, default=3, help="step 1's repeats (medians)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke sizes: 1,000 tasks, one repeat, a 60 s crash cap, "
                        "20 s of goodput arrivals")
    parser.add_argument("--loop", choices=LOOPS, default=os.environ.get(LOOP_ENV, LOOPS[0]),
                        help="event loop of benchmarks.run's processes (default %(default)s)")
    parser.add_argument("--json", type=Path, help="write every figure and each step's output")
    parser.add_argument("--plot", type=Path, help="draw a PNG, one panel per row")
    args = parser.parse_args(argv)
    os.environ[LOOP_ENV] = args.loop  # benchmarks.run, run as a step, inherits it
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        parser.error(f"--steps: choose from {','.join(STEPS)}; got {args.steps!r}")
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    bad = [q for q in queues if q not in ALL_QUEUES]
    if bad or not queues:
        parser.error(f"--queues: choose from {','.join(ALL_QUEUES)}; got {args.queues!r}")
    args.steps, args.queues = steps, queues
    if args.quick:
        args.tasks, args.repeat, args.crash_wait, args.goodput_seconds = 1_000, 1, 60.0, 20.0
    else:
        args.tasks, args.crash_wait, args.goodput_seconds = 10_000, CRASH_WAIT_SECONDS, 60.0
    return args


def python_module(module: str, *rest: str) -> list[str]:
    return [sys.executable, "-m", module, *rest]


def run_together(argvs: list[list[str]]) -> list[int]:
    """Start every command at once, wait for all, return their exit codes. Their own tables
    go to stderr with their progress: stdout keeps only the suite's."""
    procs = [subprocess.Popen(argv, cwd=REPO_ROOT, stdout=sys.stderr) for argv in argvs]
    try:
        return [p.wait() for p in procs]
    finally:
        for p in procs:  # interrupted: take the others down too
            if p.poll() is None:
                p.terminate()
                p.wait()


def step_run(args: argparse.Namespace, tmp: Path) -> dict:
    """Step 1: every queue workload but the crash, for every queue, taking turns."""
    out = tmp / "run.json"
    workloads = [w for w in WORKLOADS if w != "crash"]
    argv = python_module(
        "benchmarks.run", "--redis-url", args.redis_url, "--queues", ",".join(args.queues),
        "--workloads", ",".join(workloads), "--repeat", str(args.repeat),
        "--tasks", str(args.tasks), "--json", str(out))
    if run_together([argv])[0] != 0 or not out.exists():
        raise StepFailed("benchmarks.run failed (its own lines above say why)")
    return json.loads(out.read_text())


def step_crash(args: argparse.Namespace, tmp: Path) -> dict:
    """Step 2: the crash workload for all queues at once, one run per queue."""
    queues = [q for q in args.queues if q == "ours" or q not in OUR_VARIANTS]
    outs = {queue: tmp / f"crash-{queue}.json" for queue in queues}
    argvs = [
        python_module(
            "benchmarks.run", "--redis-url", args.redis_url, "--queues", queue,
            "--workloads", "crash", "--crash-wait", str(args.crash_wait), "--json", str(out))
        for queue, out in outs.items()
    ]
    codes = run_together(argvs)
    merged: dict = {"figures": {}, "errors": {}, "skipped": {}, "notes": [], "runs": {}}
    for (queue, out), code in zip(outs.items(), codes, strict=True):
        if code != 0 or not out.exists():
            merged["errors"][queue] = {"crash": f"benchmarks.run exited with {code}"}
            continue
        data = json.loads(out.read_text())
        merged["runs"][queue] = data
        for key in ("figures", "errors", "skipped"):
            merged[key].update(data.get(key, {}))
        merged["notes"] += data.get("notes", [])
    return merged


def step_goodput(args: argparse.Namespace, tmp: Path) -> dict:
    """Step 3: goodput under a simulated provider's limits, every mode."""
    out = tmp / "goodput.json"
    # ours with and without the limiter, the anchor, and the chosen peers that have a
    # goodput worker (`benchmarks/workers/goodput_<queue>.py`)
    ours = ("shared", "plain", "cookbook") if "ours" in args.queues else ()
    modes = [*ours, *(m for m in GOODPUT_COLUMNS if m in args.queues)]
    if not modes:
        say("goodput: none of the chosen queues has a goodput mode; skipped")
        return {"modes": {}}
    argv = python_module("benchmarks.goodput", "--redis-url", args.redis_url,
                         "--modes", ",".join(modes),
                         "--seconds", str(args.goodput_seconds), "--json", str(out))
    if run_together([argv])[0] != 0 or not out.exists():
        raise StepFailed("benchmarks.goodput failed (its own lines above say why)")
    return json.loads(out.read_text())


def step_follow(args: argparse.Namespace, tmp: Path) -> dict:
    """Step 4: first token and later chunks to a follower in another process, at the
    package's default coalescing interval."""
    out = tmp / "follow.json"
    interval = ProcessorSettings().stream_coalesce_s
    argv = python_module("benchmarks.follow_fanout", "--redis-url", args.redis_url,
                         "--intervals", repr(interval), "--json", str(out),
                         *(["--rounds", "2"] if args.quick else []))
    if run_together([argv])[0] != 0 or not out.exists():
        raise StepFailed("benchmarks.follow_fanout failed (its own lines above say why)")
    return {"intervals": json.loads(out.read_text())}


class StepFailed(RuntimeError):
    """A step's command failed; the others still run."""


STEP_FUNCTIONS = {"run": step_run, "crash": step_crash, "goodput": step_goodput,
                  "follow": step_follow}


#: goodput modes and the column each one fills
GOODPUT_COLUMNS = {"shared": "ours", "plain": "ours-plain", "cookbook": "cookbook",
                   "arq": "arq", "saq": "saq", "taskiq": "taskiq"}


def merge_goodput(results: Results, data: dict) -> None:
    for mode, figures in data.get("modes", {}).items():
        column = GOODPUT_COLUMNS.get(mode)
        if column is None:
            continue
        results.figures.setdefault(column, {}).update({
            "goodput_share": 100 * figures["of_provider_limit"],
            "goodput_refused": 100 * figures["refused_share"],
            "goodput_p50_s": figures["p50_s"],
            "goodput_p95_s": figures["p95_s"],
            "goodput_failed": figures["failed"],
            "goodput_unfinished": figures.get("unfinished"),
        })


def merge_follow(results: Results, data: dict) -> None:
    for run in data["intervals"]:
        results.figures.setdefault("ours", {}).update({
            "first_token_p50_ms": run["first"]["p50_ms"],
            "first_token_p99_ms": run["first"]["p99_ms"],
            "chunk_p50_ms": run["all"]["p50_ms"],
            "chunk_p99_ms": run["all"]["p99_ms"],
            "writes_per_answer": run["writes_per_answer"],
        })
    for queue in results.queues:  # the peers have no stream to follow
        if queue not in NOT_PEERS and queue in results.figures:
            results.figures[queue].update(dict.fromkeys(FOLLOW_KEYS))


def merge_crash(results: Results, data: dict) -> None:
    for queue, figures in data["figures"].items():
        results.figures.setdefault(queue, {}).update(figures)
    for queue, failures in data["errors"].items():
        results.errors.setdefault(queue, {}).update(failures)
    results.notes += data["notes"]


def merge_all(queues: list[str], outputs: dict[str, dict]) -> Results:
    """One Results from every step's output (a step that failed is left out)."""
    columns = list(queues)
    if "goodput" in outputs:
        columns += [c for c in ("ours-plain", "cookbook") if c not in columns]
    results = Results(queues=columns)
    if "run" in outputs:
        run = outputs["run"]
        results.figures.update(run["figures"])
        results.errors.update(run["errors"])
        results.skipped.update(run["skipped"])
        results.notes += run["notes"]
    if "crash" in outputs:
        merge_crash(results, outputs["crash"])
    if "goodput" in outputs:
        merge_goodput(results, outputs["goodput"])
    if "follow" in outputs:
        merge_follow(results, outputs["follow"])
    return results


def _fig(results: Results, queue: str, key: str) -> float | None:
    return results.figures.get(queue, {}).get(key)


def _best_peer(results: Results, key: str, higher: bool) -> tuple[str, float] | None:
    peers = [(q, v) for q in results.queues
             if q not in NOT_PEERS and (v := _fig(results, q, key)) is not None]
    if not peers:
        return None
    return (max if higher else min)(peers, key=lambda item: item[1])


def _at_least(results: Results, key: str, floor: float | None, higher: bool = True,
              unit: str = "%") -> tuple[str, bool | None]:
    """ours against an absolute floor (or ceiling) and against the best peer."""
    mine = _fig(results, "ours", key)
    if mine is None:
        return "not measured", None
    parts, met = [f"{mine:,.1f} {unit}"], True
    if floor is not None:
        met = mine >= floor if higher else mine <= floor
    best = _best_peer(results, key, higher)
    if best is not None:
        parts.append(f"best peer {best[0]} {best[1]:,.1f} {unit}")
        met = met and (mine >= best[1] if higher else mine <= best[1])
    return "; ".join(parts), met


def _goodput(results: Results) -> tuple[str, bool | None]:
    share, refused = (_fig(results, "ours", k) for k in ("goodput_share", "goodput_refused"))
    if share is None or refused is None:
        return "not measured", None
    text = f"{share:.1f} % of the provider's rate, {refused:.1f} % of calls refused"
    best = _best_peer(results, "goodput_share", True)
    if best is not None:
        text += f"; best peer {best[0]} {best[1]:.1f} %"
    anchor = _fig(results, "cookbook", "goodput_share")
    if anchor is not None:
        text += f"; anchor {anchor:.1f} %"
    return text, share >= 95 and refused < 1


def _crash(results: Results) -> tuple[str, bool | None]:
    if "crash_lost" not in results.figures.get("ours", {}):
        return "not measured", None
    lost = _fig(results, "ours", "crash_lost") or 0
    recovery = _fig(results, "ours", "crash_recovery_s")
    text = f"{lost:.0f} lost, all re-run after {recovery:.1f} s" if recovery is not None \
        else f"{lost:.0f} lost"
    others = [(q, _fig(results, q, "crash_recovery_s")) for q in results.queues
              if q not in NOT_PEERS and "crash_lost" in results.figures.get(q, {})]
    done = [(q, v) for q, v in others if v is not None]
    if done:
        q, v = min(done, key=lambda item: item[1])
        text += f"; fastest peer {q} {v:.1f} s"
    lost_by = [q for q, v in others if v is None]
    if lost_by:
        text += f"; lost by {', '.join(lost_by)}"
    ahead = recovery is not None and all(v is None or recovery <= v for _, v in others)
    return text, lost == 0 and ahead


#: the targets: what is claimed, and how the run's figures decide it
TARGETS: tuple[tuple[str, Callable[[Results], tuple[str, bool | None]]], ...] = (
    ("goodput >= 95 % of the provider's limit, 429s < 1 % of calls", _goodput),
    ("first token to a follower in another process, p99 < 5 ms",
     lambda r: _at_least(r, "first_token_p99_ms", 5.0, higher=False, unit="ms")),
    ("I/O efficiency, 100 in flight: >= 97 % by default and >= best peer",
     lambda r: _at_least(r, "io_efficiency", 97.0)),
    ("I/O efficiency, 1,000 in flight: >= 97 % by default and >= best peer",
     lambda r: _at_least(r, "io1000_efficiency", 97.0)),
    ("pickup latency p99 no worse than the best peer",
     lambda r: _at_least(r, "latency_p99", None, higher=False, unit="ms")),
    ("crash recovery: nothing lost, re-run no later than any peer", _crash),
)


def targets_table(results: Results) -> str:
    rows = [("target", "measured (ours)", "met?")]
    for text, check in TARGETS:
        measured, met = check(results)
        rows.append((text, measured, {True: "yes", False: "**no**", None: "–"}[met]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outputs: dict[str, dict] = {}
    failed: dict[str, str] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        for number, name in enumerate(args.steps, 1):
            say(f"step {number}/{len(args.steps)}: {name} "
                f"({time.monotonic() - began:.0f} s since the start)")
            try:
                outputs[name] = STEP_FUNCTIONS[name](args, Path(tmp))
            except StepFailed as exc:
                failed[name] = str(exc)
                say(f"step {name} failed: {exc}")
            except KeyboardInterrupt:
                say("interrupted")
                return 130
    results = merge_all(args.queues, outputs)
    say(f"all steps done in {time.monotonic() - began:.0f} s")
    print(table(results), flush=True)
    print()
    print(targets_table(results), flush=True)
    for name, why in failed.items():
        say(f"failed step {name}: {why}")
    meta = describe(args, outputs, failed)
    if args.json:
        write_json(args.json, results, meta)
        say(f"wrote {args.json}")
    if args.plot:
        write_plot(args.plot, results, plot_title(meta))
        say(f"wrote {args.plot}")
    return 1 if failed or not outputs else 0


def describe(args: argparse.Namespace, outputs: dict[str, dict], failed: dict[str, str]) -> dict:
    """The JSON's metadata: the first step's (machine, sizes, versions), the command, and
    each step's own output."""
    run = outputs.get("run") or next(iter(outputs.get("crash", {}).get("runs", {}).values()), {})
    meta = {k: v for k, v in run.items()
            if k not in ("figures", "errors", "skipped", "notes", "queues", "metrics")}
    meta["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    meta["command"] = " ".join(["python -m benchmarks.suite", *sys.argv[1:]])
    meta["machine"] = meta.get("machine") or {"nproc": "?", "cpu_model": "?", "redis_server": "?"}
    meta["steps"] = {name: data for name, data in outputs.items() if name != "run"}
    meta["failed_steps"] = failed
    return meta


if __name__ == "__main__":
    sys.exit(main())
