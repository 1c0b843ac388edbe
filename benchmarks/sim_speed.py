"""How fast the virtual-time simulator runs: 10,000 tasks, 50 workers, ~1 s mean latency.

Two scenarios by default: "saturated" (arrivals 10% above capacity, a few minutes of
simulated time) and "hours" (2.5 arrivals/s: the same 10,000 tasks spread over an hour
or more). Prints wall time, simulated time and tasks per second of wall time; with
`--profile`, the top cProfile entries by own time, to show where the time goes. A script
that prints figures, not a timed test. Run from the repository root:

    .venv/bin/python benchmarks/sim_speed.py                 # both scenarios
    .venv/bin/python benchmarks/sim_speed.py --rate 2.5      # one scenario
    .venv/bin/python benchmarks/sim_speed.py --profile --tasks 3000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys

from chatroom_async.simulation import SimulationConfig, simulate

#: ~1.0 s mean latency: TTFT ~0.54 s plus ~35 tokens at ~68 tokens/s (realistic profile).
LATENCY_1S = {"output_tokens_p50": 30.0}
SCENARIOS = {"saturated": None, "hours": 2.5}


def run(tasks: int, concurrency: int, rate: float | None, seed: int) -> None:
    config = SimulationConfig(
        tasks=tasks, concurrency=concurrency, rate=rate, backend=LATENCY_1S, seed=seed
    )
    report = simulate(config)
    t = report.totals
    print(
        f"  rate {config.effective_rate():.1f}/s: wall {report.wall_time_s:.2f} s, "
        f"simulated {report.duration_s:,.0f} s ({report.duration_s / 3600:.2f} h), "
        f"{tasks / report.wall_time_s:,.0f} tasks/s of wall time, "
        f"{report.duration_s / report.wall_time_s:,.0f}x real time"
    )
    print(
        f"    completed {t['completed']}, failed {t['failed']}, retries {t['retries']}, "
        f"mean service {report.service_time['mean']:.3f} s, "
        f"steady throughput {report.throughput['steady_per_s']:.1f}/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="one scenario at this arrival rate (default: both scenarios)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print the cProfile top 25")
    args = parser.parse_args()
    scenarios = {"custom": args.rate} if args.rate is not None else SCENARIOS
    print(f"{args.tasks} tasks, {args.concurrency} workers, python {sys.version.split()[0]}")
    profiler = cProfile.Profile() if args.profile else None
    for name, rate in scenarios.items():
        print(name)
        if profiler is not None:
            profiler.enable()
        run(args.tasks, args.concurrency, rate, args.seed)
        if profiler is not None:
            profiler.disable()
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
