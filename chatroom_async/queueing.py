"""Queueing theory for the worker pool: what M/M/c and Little's law predict.

Pure arithmetic, no I/O. A worker pool with `c` slots, Poisson arrivals at `rate` per second
and exponential service times of mean `service_s` is the M/M/c queue; its Erlang C formula
gives the chance that a task waits and the mean wait. The notebooks and the what-if
playground draw these predictions beside what the simulator measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MMcPrediction:
    """What M/M/c predicts for one pool.

    Attributes:
        rate: arrivals per second (lambda).
        service_s: mean service time in seconds (1/mu).
        servers: slots working in parallel (c).
        utilization: rate * service_s / servers (rho); >= 1 means the queue grows forever.
        p_wait: the chance that an arriving task waits (Erlang C); 1.0 when unstable.
        mean_wait_s: mean time in the queue (Wq); inf when unstable.
        mean_latency_s: mean time from arrival to finish (W = Wq + service_s).
        mean_in_system: tasks queued or running on average (L = rate * W, Little's law).
        throughput: finished tasks per second: rate when stable, servers / service_s otherwise.
    """

    rate: float
    service_s: float
    servers: int
    utilization: float
    p_wait: float
    mean_wait_s: float
    mean_latency_s: float
    mean_in_system: float
    throughput: float

    @property
    def stable(self) -> bool:
        """True when the pool keeps up (utilization < 1)."""
        return self.utilization < 1.0

    def wait_quantile_s(self, q: float) -> float:
        """The q-quantile (0 < q < 1) of the time in the queue: exponential past P(wait)."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {q!r}")
        if not self.stable:
            return math.inf
        if q <= 1.0 - self.p_wait:
            return 0.0
        decay = self.servers / self.service_s - self.rate
        return math.log(self.p_wait / (1.0 - q)) / decay


def erlang_c(servers: int, offered_load: float) -> float:
    """P(wait) in an M/M/c queue with `offered_load` = rate * service time (in Erlangs).

    Computed through the Erlang B recursion, which stays stable for hundreds of servers.
    """
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers!r}")
    if offered_load < 0:
        raise ValueError(f"offered_load must be >= 0, got {offered_load!r}")
    if offered_load >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    rho = offered_load / servers
    return blocking / (1.0 - rho + rho * blocking)


def mmc(rate: float, service_s: float, servers: int) -> MMcPrediction:
    """Predict an M/M/c pool: `rate` arrivals/s, mean service `service_s`, `servers` slots."""
    if rate < 0 or service_s <= 0:
        raise ValueError(f"need rate >= 0 and service_s > 0, got {rate!r}, {service_s!r}")
    load = rate * service_s
    rho = load / servers
    p_wait = erlang_c(servers, load)
    if rho >= 1.0:
        wait = math.inf
        throughput = servers / service_s
    else:
        wait = p_wait * service_s / (servers - load)
        throughput = rate
    latency = wait + service_s
    return MMcPrediction(rate=rate, service_s=service_s, servers=servers, utilization=rho,
                         p_wait=p_wait, mean_wait_s=wait, mean_latency_s=latency,
                         mean_in_system=rate * latency if math.isfinite(latency) else math.inf,
                         throughput=throughput)


def littles_law(throughput: float, latency_s: float) -> float:
    """L = lambda * W: tasks in the system on average, from throughput and mean latency."""
    return throughput * latency_s
