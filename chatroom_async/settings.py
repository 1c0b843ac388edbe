"""The processor's settings: one frozen dataclass, keyword-only, validated on creation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .retry import RetryPolicy
from .validation import Limits


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorSettings:
    """How a processor behaves. Durations are float seconds.

    Attributes:
        lease_s: how long a claim lasts unless renewed; a dead worker's tasks return to the
            queue this long after its last renewal.
        renew_interval_s: how often a worker renews its leases (default `lease_s / 3`).
        drain_timeout_s: how long `stop()` lets running tasks finish before handing them
            back to the queue.
        result_ttl_s: how long a finished task's record stays readable (the chapter's 3600).
        extra_deliveries: deliveries allowed beyond `max_retries + 1` (crashed or lost
            attempts) before a task is dead-lettered.
        retry: the backoff policy.
        limits: what `submit_task` accepts.
        cache_ttl_s: cache responses for this long; None turns the cache off.
        stream: use the backend's `stream()` when it has one, firing `task_progress`.
        publish_events: send events: to each task's stream (what `follow` reads) and on
            the namespace's channels (what other processes' callbacks hear).
        stream_coalesce_s: the least time between two progress writes of one attempt; the
            chunks in between go out as one event (see `worker/chunks.py`).
        stream_cap: a task's event stream keeps about this many newest events.
        stream_ttl_s: how long a finished task's event stream stays for `follow` (at most
            `result_ttl_s`); after that a follow gets the final event rebuilt from the record.
            A stream costs ~40 KB for a 4 s answer (85 events, measured on Redis 7), so
            keep this short under high load.
        max_idle_wait_s: longest single blocking wait of an idle worker.
        dead_letter_cap: how many ids the dead-letter list keeps.
        prefetch: tasks a worker claims beyond its free slots and holds, leased, to start
            the moment a slot frees (no round trip between one task and the next), while
            `prefetch_below_s` allows. Each claim reports the first task it left ready, and a
            held task starts only if the worker's latest claim saw no task ready ahead of it
            (by score, then id, the ready set's order); otherwise the slot waits for that
            task's claim. So a held task never starts ahead of a task ordered before it that
            was ready when the worker's latest claim ran. A task submitted after that claim
            may start after tasks already held (one per slot that frees before the next
            claim); with 0 (each slot claims the first ready task when it frees) it misses
            only the claims already in flight when it was submitted. The default, 10, one
            batch of the outbox (`worker/outbox.py`), is enough: while one call records ten
            outcomes and claims their successors, the next ten slots to free start held
            tasks. Held tasks are this worker's: at the end of a backlog another worker
            process idles while they wait here for a slot (up to one attempt longer),
            `get_stats()` counts them under "held", apart from "in_flight" (they are leased,
            not running; the calls that claim and record them keep the count, so "in_flight"
            never shows more than the slots: `worker/tally.py`), and `stop()` hands them back
            at once. See `worker/pool.py` and docs/benchmarks.md.
        prefetch_below_s: with `prefetch`, hold tasks only while this worker's attempts take
            less than this on average (a moving average of the latest; none are held before
            the first ends). A held task saves a round trip (~1-3 ms) and may cost up to one
            attempt's time at the end of a backlog, so holding pays for short tasks and not
            for AI calls of seconds. When the average crosses it, the tasks held go back to
            the queue (not counted against their delivery limit). None holds whatever the
            attempts take.
        provider_limits: the AI provider's limits, shared by every worker of the namespace
            through Redis (`ProviderLimits`); None sends every call at once and leaves the
            429s to the retry policy.
    """

    lease_s: float = 30.0
    renew_interval_s: float | None = None
    drain_timeout_s: float = 10.0
    result_ttl_s: float = 3600.0
    extra_deliveries: int = 2
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Limits = field(default_factory=Limits)
    cache_ttl_s: float | None = None
    stream: bool = True
    publish_events: bool = True
    stream_coalesce_s: float = 0.05
    stream_cap: int = 10_000
    stream_ttl_s: float = 600.0
    max_idle_wait_s: float = 30.0
    dead_letter_cap: int = 10_000
    prefetch: int = 10
    prefetch_below_s: float | None = 0.25
    provider_limits: ProviderLimits | None = None

    def __post_init__(self) -> None:
        for name in ("lease_s", "drain_timeout_s", "result_ttl_s", "max_idle_wait_s",
                     "stream_ttl_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.renew_interval_s is not None and not 0 < self.renew_interval_s < self.lease_s:
            raise ValueError("renew_interval_s must be between 0 and lease_s")
        if not (math.isfinite(self.stream_coalesce_s) and self.stream_coalesce_s >= 0):
            raise ValueError("stream_coalesce_s must be a number of seconds >= 0")
        if self.stream_cap < 10:
            raise ValueError("stream_cap must be >= 10")
        if self.extra_deliveries < 0 or self.dead_letter_cap < 1:
            raise ValueError("extra_deliveries must be >= 0 and dead_letter_cap >= 1")
        if not isinstance(self.prefetch, int) or isinstance(self.prefetch, bool) \
                or self.prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0, got {self.prefetch!r}")
        below = self.prefetch_below_s
        if below is not None and not (isinstance(below, (int, float))
                                      and not isinstance(below, bool) and below > 0):
            raise ValueError(f"prefetch_below_s must be a positive number of seconds or None, "
                             f"got {below!r}")
        if self.cache_ttl_s is not None and not self.cache_ttl_s > 0:
            raise ValueError("cache_ttl_s must be positive or None")

    @property
    def renew_every_s(self) -> float:
        return self.renew_interval_s or self.lease_s / 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderLimits:
    """What the AI provider allows one API key, shared by every worker of a namespace.

    With these set, a worker asks a limiter in Redis before each AI call and waits its turn
    instead of sending a call the provider would refuse with a 429: the workers of every
    process together stay within the limits, and a 429's `retry_after` pauses them all.
    None means no limit of that kind.

    Attributes:
        rpm: requests per minute.
        tpm: tokens per minute, charged before the call as the provider does (prompt plus
            the most the answer may take: the backend's `tokens_charged(request)` when it
            has one, else `default_tokens`).
        max_concurrency: calls in flight at once.
        default_tokens: the charge per call for a backend that cannot say.
        call_lease_s: a call slot whose worker died is free again after this long.
    """

    rpm: float | None = None
    tpm: float | None = None
    max_concurrency: int | None = None
    default_tokens: int = 1000
    call_lease_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        if self.max_concurrency is not None and not (
                isinstance(self.max_concurrency, int) and self.max_concurrency >= 1):
            raise ValueError(f"max_concurrency must be an int >= 1 or None, "
                             f"got {self.max_concurrency!r}")
        if not self.default_tokens >= 1 or not self.call_lease_s > 0:
            raise ValueError("default_tokens must be >= 1 and call_lease_s positive")

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.rpm, self.tpm, self.max_concurrency))
