"""Virtual-time runs of the real processor: hours of simulated traffic in seconds.

`simulate` (or `await simulate_async` in a notebook) drives the same `AsyncAIProcessor`
code, on the embedded fakeredis, with the simulated LLM API, under a virtual clock: the
event loop jumps over idle time instead of waiting. The same seed gives the same report.
`run_virtual` / `await run_virtual_async(main)` run any coroutine of your own that way
(the notebooks trace one request's events in virtual time with it).

    run.py        `SimulationConfig`, `simulate`, `simulate_async`, the `simulate` command
    vtime.py      the virtual-time event loop, `run_virtual`, `run_virtual_async`
    arrivals.py   when tasks arrive (constant, Poisson, bursty) and what they ask
    recorder.py   collects each task's trace from the processor's events
    report.py     `SimulationReport`: throughput, latency, retries, goodput, time series
"""

from .report import SimulationReport
from .run import (
    SIM_EPOCH,
    SimulationConfig,
    add_simulate_parser,
    config_from_args,
    run_simulate_command,
    simulate,
    simulate_async,
)
from .vtime import run_virtual, run_virtual_async

__all__ = ["SIM_EPOCH", "SimulationConfig", "SimulationReport", "add_simulate_parser",
           "config_from_args", "run_simulate_command", "run_virtual", "run_virtual_async",
           "simulate", "simulate_async"]
