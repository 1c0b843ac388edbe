"""What a live dashboard costs the processor it watches: throughput with and without one.

The same workload runs alternately without and with a `LiveDashboard` attached (redrawing
every `--interval` seconds, the frame drawn in a worker process by default), on the
embedded fakeredis, and the script prints for each run the tasks per second (wall clock:
noisy on a shared machine), the CPU time this process spent per 1,000 tasks (what the
dashboard costs the processor, drawing excluded when it is in another process; steady
under load) and the p99 lag of the event loop, then the medians and the differences. A
script that prints figures, not a timed test. Run from the repository root:

    .venv/bin/python benchmarks/dashboard_overhead.py                  # both workloads
    .venv/bin/python benchmarks/dashboard_overhead.py --workload noop --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from chatroom_async import AIRequest, AsyncAIProcessor, FunctionBackend, InstantBackend
from chatroom_async.dashboard import LiveDashboard, render_png

#: name -> (tasks, workers, seconds each task awaits; None = the instant backend)
WORKLOADS: dict[str, tuple[int, int, float | None]] = {
    "noop": (8000, 50, None),  # CPU-bound: the processor's own overhead is the limit
    "io": (6000, 100, 0.1),  # 100 tasks of 0.1 s in flight: ideal 1,000 tasks/s
}


def backend(sleep_s: float | None) -> Any:
    if sleep_s is None:
        return InstantBackend()

    async def call(request: AIRequest) -> dict[str, Any]:
        await asyncio.sleep(sleep_s)
        return {"response": "ok"}
    return FunctionBackend(call)


async def lag_probe(lags: list[float]) -> None:
    """Record how late a 10 ms sleep wakes up: how long the loop was kept from running."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(0.01)
        lags.append(loop.time() - before - 0.01)


async def one_run(workload: str, with_dashboard: bool, interval_s: float,
                  render: str) -> tuple[float, float, int, float]:
    """Tasks/s of one run, CPU s per 1,000 tasks, the frames drawn, the loop's p99 lag (s)."""
    tasks, workers, sleep_s = WORKLOADS[workload]
    done = asyncio.Event()
    finished = 0

    def on_done(_: Any) -> None:
        nonlocal finished
        finished += 1
        if finished == tasks:
            done.set()
    async with AsyncAIProcessor(max_workers=workers, backend=backend(sleep_s)) as p:
        p.add_callback("task_completed", on_done)
        dash = (LiveDashboard(p, interval_s=interval_s, render=render).start()
                if with_dashboard else None)
        if dash is not None:  # measure from a running dashboard on, its renderer warm
            while dash.renderer.mode == "process" and not dash.renderer.ready:
                await dash.next_frame()
        lags: list[float] = []
        probe = asyncio.create_task(lag_probe(lags))
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, tasks, 500):
            await p.submit_many([{"user_id": 1, "request_type": "chat_completion",
                                  "request_data": {"message": f"q{j}"}}
                                 for j in range(i, min(tasks, i + 500))])
        await done.wait()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        draws = 0
        if dash is not None:
            draws = dash.draws
            await dash.stop()
    return tasks / elapsed, 1000 * cpu / tasks, draws, statistics.quantiles(lags, n=100)[98]


def frame_time(samples: int = 5) -> float:
    """Seconds to draw one frame of a dashboard with 120 samples."""
    async def frame() -> Any:
        async with AsyncAIProcessor(max_workers=1) as p:
            dash = LiveDashboard(p)
            for _ in range(120):
                await dash.sampler.sample()
            return dash.sampler.frame()
    f = asyncio.run(frame())
    started = time.perf_counter()
    for _ in range(samples):
        render_png(f)
    return (time.perf_counter() - started) / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "both"], default="both")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each kind (default 5)")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between frames (default 2.0, the dashboards')")
    parser.add_argument("--render", choices=("process", "thread"), default="process",
                        help="where frames are drawn (default: a worker process)")
    args = parser.parse_args()
    print(f"one frame: {frame_time() * 1000:.0f} ms to draw (on a worker thread)")
    for name in WORKLOADS if args.workload == "both" else [args.workload]:
        rates: dict[bool, list[float]] = {False: [], True: []}
        cpus: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for attached in (False, True):  # alternate, so a drifting machine drifts for both
                rate, cpu, draws, lag = asyncio.run(
                    one_run(name, attached, args.interval, args.render))
                rates[attached].append(rate)
                cpus[attached].append(cpu)
                print(f"  {name:5} round {r + 1} {'with' if attached else 'without':7} "
                      f"dashboard: {rate:7,.0f} tasks/s, CPU {cpu:5.3f} s/1000 tasks, "
                      f"loop lag p99 {lag * 1000:6.1f} ms" + (f", {draws} frames" if draws else ""))
        print(f"{name}: {_change(rates, 'tasks/s')}; {_change(cpus, 'CPU s/1000 tasks')} "
              f"(a dashboard every {args.interval:g} s, drawn in a {args.render})")


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3f}"


def _change(values: dict[bool, list[float]], unit: str) -> str:
    without, with_ = statistics.median(values[False]), statistics.median(values[True])
    return (f"median {_num(without)} -> {_num(with_)} {unit} "
            f"({100 * (with_ - without) / without:+.1f} %)")


if __name__ == "__main__":
    main()
