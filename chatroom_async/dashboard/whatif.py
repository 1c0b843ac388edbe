"""What-if arithmetic for the playground: one simulation's settings, its run, and what
M/M/c predicts for the same pool. Pure, except `run_whatif`, which runs the simulator.

The prediction treats the pool as M/M/c: Poisson arrivals, `c` = the concurrency or the
provider's in-flight cap if lower, and a service time per task measured in the run (every
attempt's time on a worker, retries included, per finished task). Backoff waits and the
provider's RPM bucket are outside the model; the RPM cap is drawn as a line instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chatroom_async import (
    ProcessorSettings,
    RetryPolicy,
    SimulationConfig,
    SimulationReport,
    simulate_async,
)
from chatroom_async.queueing import MMcPrediction, mmc


@dataclass(frozen=True, slots=True, kw_only=True)
class WhatIf:
    """One point of the playground. Rates are per second, durations seconds."""

    rate: float = 3.0
    concurrency: int = 10
    provider_limit: int = 0  # the provider's max calls in flight; 0 = no cap
    rpm: int = 0  # the provider's requests per minute; 0 = no limit
    failure_rate: float = 0.0
    max_retries: int = 3
    retry_base_s: float = 0.5
    sim_seconds: float = 120.0
    seed: int = 0

    def servers(self) -> int:
        """The slots that can really work at once: the concurrency or the provider's cap."""
        return min(self.concurrency, self.provider_limit or self.concurrency)

    def same_pool(self, other: WhatIf) -> bool:
        """Whether `other` differs from this one in the arrival rate only."""
        from dataclasses import replace

        return replace(other, rate=self.rate) == self

    def config(self) -> SimulationConfig:
        """The simulation of this point: about `sim_seconds` of arrivals."""
        tasks = int(min(1500, max(50, round(self.rate * self.sim_seconds))))
        backend = {"max_concurrency": self.provider_limit or None, "rpm": self.rpm or None,
                   "retry_after_s": 1.0}
        settings = ProcessorSettings(stream=False, publish_events=False,
                                     retry=RetryPolicy(base_s=self.retry_base_s))
        return SimulationConfig(tasks=tasks, concurrency=self.concurrency, rate=self.rate,
                                failure_rate=self.failure_rate, max_retries=self.max_retries,
                                backend=backend, settings=settings, seed=self.seed,
                                horizon_s=4 * self.sim_seconds)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A run's headline figures beside the M/M/c prediction for the same pool."""

    point: WhatIf
    report: SimulationReport
    throughput: float
    mean_latency_s: float | None
    p95_latency_s: float | None
    service_s: float
    prediction: MMcPrediction


def service_per_task(report: SimulationReport) -> float:
    """Seconds of worker time per finished task: every attempt's time, retries included."""
    finished = report.totals["completed"] + report.totals["failed"]
    mean = report.service_time["mean"]
    if not finished or mean is None:
        return math.nan
    return float(mean) * report.totals["attempts"] / finished


def outcome(point: WhatIf, report: SimulationReport) -> Outcome:
    """Measure `report` and predict the same pool with M/M/c."""
    service = service_per_task(report)
    tp = report.throughput
    throughput = tp["steady_per_s"] or tp["overall_per_s"] or 0.0
    lat = report.latency["overall"]
    prediction = mmc(point.rate, service if service > 0 else 1e-9, point.servers())
    return Outcome(point, report, float(throughput), lat["mean"], lat["p95"], service,
                   prediction)


async def run_whatif(point: WhatIf) -> Outcome:
    """Simulate `point` in virtual time (on a worker thread) and compare with M/M/c."""
    return outcome(point, await simulate_async(point.config()))
